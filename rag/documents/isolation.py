"""Reading a user's file in a process of its own, bounded in time and memory.

A hostile or broken file (a parser trap, a decompression bomb) then costs
that file alone: its reading is stopped at the time limit rather than left
running, what it allocates is capped by the operating system and never
becomes the server's, and other uploads go on meanwhile. The process is a
fork of the caller (copy-on-write: a few milliseconds, whatever the models
loaded), which runs only the converters and exits; a fork server or a fresh
interpreter would import the caller's main module (the chat's, with Gradio)
again for every file.
"""
from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

from rag.documents.converters import DEFAULT_MAX_TEXT_CHARS, load_document
from rag.documents.model import Document
from rag.documents.refusals import UnreadableDocument, refusal, unreadable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadLimits:
    """How much one file may cost: bytes on disk, characters of text, seconds
    and megabytes (address space) of its reading process."""

    max_bytes: int | None = None
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    seconds: float = 30.0
    memory_mb: int = 2048


def _address_space_bytes() -> int:
    """This process's virtual size: a fork starts with its parent's."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def _read_in_child(connection, path: str, name: str, limits: ReadLimits) -> None:
    import resource

    try:
        memory = _address_space_bytes() + limits.memory_mb * 2**20  # what the reading may add to the fork
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (OSError, ValueError, StopIteration) as error:  # no /proc, or a hard limit already lower
        log.warning("reading %s without a memory limit (%s)", name, error)
    try:
        result = ("document", load_document(path, name, limits.max_bytes, limits.max_text_chars))
    except UnreadableDocument as error:
        result = ("refused", error.refusal)
    except MemoryError:
        result = ("refused", refusal("memory", name=name, mb=limits.memory_mb))
    except Exception as error:  # reported as a plain reason; the details go to the log
        result = ("failed", f"{type(error).__name__}: {error}")
    try:
        connection.send(result)
    except MemoryError:
        connection.send(("refused", refusal("memory", name=name, mb=limits.memory_mb)))
    finally:
        connection.close()


def read_document(path: str | Path, name: str | None = None, limits: ReadLimits = ReadLimits()) -> Document:
    """The document in a file, read in a process of its own within ``limits``;
    raises :class:`UnreadableDocument` with the reason otherwise."""
    path = Path(path)
    name = name or path.name
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_read_in_child, args=(sending, str(path), name, limits), daemon=True,
                            name=f"rag-read-{name[:40]}")
    child.start()
    sending.close()
    try:
        if not receiving.poll(limits.seconds):
            log.warning("reading %s took over %g s: stopped", name, limits.seconds)
            raise unreadable("timeout", name=name, seconds=limits.seconds)
        try:
            kind, value = receiving.recv()
        except (EOFError, OSError):
            child.join(1)
            log.warning("reading %s: its process ended without an answer (exit code %s)", name, child.exitcode)
            raise unreadable("reader_failed", name=name) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receiving.close()
    if kind == "document":
        return value
    if kind == "refused":
        raise UnreadableDocument(value)
    log.warning("reading %s failed: %s", name, value)
    raise unreadable("reader_failed", name=name)
