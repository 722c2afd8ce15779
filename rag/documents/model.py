"""Documents and chunks: the plain data every stage passes along."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_UNSAFE = re.compile(r"[^\w.-]+")
_DATE_LINE = re.compile(r"\A\s*date\s+(\d{4}-\d{2}(?:-\d{2})?)\s+")
DEFAULT_DOCUMENT = "article-mistral-microsoft-2024-02.txt"


@dataclass(frozen=True)
class Document:
    """A source text. ``date`` comes from a leading ``date YYYY-MM`` line, which
    is metadata and not part of ``text`` (all offsets are into ``text``)."""

    id: str
    title: str
    text: str
    date: str | None = None
    # Where each page starts in ``text`` (a PDF's pages), so answers can cite their page.
    pages: tuple[int, ...] = ()
    source: str | None = None  # the file it was read from, by name
    file_sha256: str | None = None  # the hash of that file's bytes: the same file is known again by it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.id}\0{self.date}\0{self.text}".encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: ``text == document.text[start:end]``."""

    doc_id: str
    start: int
    end: int
    text: str


def parse_document(raw: str, doc_id: str, title: str | None = None) -> Document:
    """Build a document from raw text, taking an optional leading date line as
    metadata; a byte-order mark, which editors may leave, is not text."""
    raw = raw.removeprefix("\ufeff")
    match = _DATE_LINE.match(raw)
    date = match.group(1) if match else None
    text = raw[match.end():] if match else raw
    text = text.strip()
    if not text:
        raise ValueError(f"document {doc_id!r} is empty")
    return Document(id=doc_id, title=title or doc_id, text=text, date=date)


def check_documents(documents: list[Document]) -> None:
    """A pipeline needs something to read, and an answer names its document by
    id, so two documents with one id would make that name ambiguous."""
    if not documents:
        raise ValueError("There are no documents to answer from: give at least one.")
    seen: set[str] = set()
    for document in documents:
        if document.id in seen:
            raise ValueError(
                f"Two documents have the id {document.id!r} (a file's name without its folder): "
                "rename one, or give the same document only once."
            )
        seen.add(document.id)


def safe_id(name: str) -> str:
    """A document id that is also a safe file name: letters, digits, ``.``, ``-``
    and ``_`` only, never hidden, at most 100 characters."""
    cleaned = _UNSAFE.sub("-", name).strip(".-")[:100]
    return cleaned or "document"


def default_documents() -> list[Document]:
    """The document embedded in the package, used when no other is given."""
    raw = resources.files("rag.data").joinpath(DEFAULT_DOCUMENT).read_text(encoding="utf-8")
    return [parse_document(raw, doc_id=Path(DEFAULT_DOCUMENT).stem, title="Microsoft et Mistral AI (février 2024)")]
