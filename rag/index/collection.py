"""Collections: named folders of documents, each with its extracted text,
passages and vectors, and one manifest that says which of them make the
collection. Nothing is pickled.

    index/<name>/collection.json             the manifest, replaced atomically, written last
    index/<name>/documents/<id>.<v>.json     a document's text and metadata
    index/<name>/passages/<id>.<v>.<k>.jsonl  its passages, with their offsets
    index/<name>/vectors/<id>.<v>.<k>.npy     their vectors (float32, normalized)
    index/<name>/pending/<id>.<v>.<k>/        batches of vectors of a document being indexed

``v`` is the document's version (a hash of its text) and ``k`` the hash of
what its vectors depend on (embedder, chunking), so files are never
rewritten in place: a reader sees the manifest's documents or the previous
manifest's, never half of one. Vectors are written batch by batch as they
are embedded, so an interrupted run (Ctrl-C, a kill) resumes where it stopped.
One writer at a time per collection (a lock file); readers need no lock.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.documents import SUPPORTED_SUFFIXES, Chunk, Document, ReadLimits, UnreadableDocument, read_document
from rag.documents.refusals import Refusal, refusal
from rag.embedding.materialize import sha256_file
from rag.index.faults import storage_error
from rag.index.file_store import FileStore
from rag.index.files import atomic_file, batch_done
from rag.index.keywords import KeywordIndex
from rag.index.manifest import FORMAT_VERSION, MANIFEST, check_manifest_shape
from rag.index.milvus_store import MilvusStore, client_for, is_milvus
from rag.index.names import check_name
from rag.index.passage_index import PassageIndex

log = logging.getLogger(__name__)

LOCK = ".lock"
DEFAULT_COLLECTION = "default"

# progress(done, total, what): passages embedded so far, passages to embed, the document being embedded.
Progress = Callable[[int, int, str], None]


class CollectionBusy(RuntimeError):
    """Another process is changing the collection."""


@dataclass
class AddReport:
    """What an add did, file by file (names as given)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, Refusal] = field(default_factory=dict)  # file name → why (str() in English, .fr in French)
    resumed: int = 0  # passages whose vectors an interrupted earlier run had already written

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced)


_folder_locks: dict[Path, threading.Lock] = {}
_folder_locks_guard = threading.Lock()


def _thread_lock(folder: Path) -> threading.Lock:
    with _folder_locks_guard:
        return _folder_locks.setdefault(folder.resolve(), threading.Lock())


class Collection:
    """One collection folder. Reading needs no lock; :meth:`add`,
    :meth:`remove`, :meth:`sync` and repairs take the collection's lock."""

    def __init__(self, folder: Path, splitter, embedder, batch_size: int = 64, flat_limit: int = 1_000_000,
                 store: str = "files", milvus_token: str = "", milvus_index: str = "FLAT") -> None:
        self.folder = Path(folder)
        self.name = check_name(self.folder.name)
        self.splitter = splitter
        self.embedder = embedder
        self.batch_size = batch_size
        self.flat_limit = flat_limit  # passages above which the file store scans an HNSW graph, not every vector
        self.store = store  # where passages are searched: "files", or "milvus:…" (rag/index/milvus_store.py)
        self.milvus_token = milvus_token
        self.milvus_index = milvus_index  # the dense index of a Milvus collection made for it

    def milvus(self, entries: list[dict] = ()) -> MilvusStore | None:
        """The collection in the Milvus store, answering from ``entries``; None for the file store."""
        if not is_milvus(self.store):
            return None
        return MilvusStore(client_for(self.store, self.milvus_token), self.name,
                           {self.stem(e): e["passages"] for e in entries}, self.milvus_index)

    # What the vectors depend on.

    def built_from(self) -> dict:
        return {"embedder": self.embedder.identity, "chunking": self.splitter.settings}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.built_from(), sort_keys=True).encode()).hexdigest()[:12]

    # Reading.

    @property
    def exists(self) -> bool:
        """Whether the collection was ever written (an empty one still has its manifest)."""
        return (self.folder / MANIFEST).exists()

    def read_manifest(self) -> dict | None:
        """The manifest; None when the collection does not exist yet. Raises ValueError when damaged."""
        path = self.folder / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"the manifest cannot be read ({error})") from None
        check_manifest_shape(manifest)
        return manifest

    def entries(self) -> list[dict]:
        """The collection's documents as listed in its manifest (empty when there is none)."""
        try:
            manifest = self.read_manifest()
        except ValueError:
            return []
        return manifest["documents"] if manifest else []

    @staticmethod
    def stem(entry: dict) -> str:
        """Names a document's passages and vectors: its id, version and what the vectors depend on."""
        return f"{entry['id']}.{entry['version']}.{entry['key']}"

    def _paths(self, entry: dict) -> dict[str, Path]:
        stem = self.stem(entry)
        return {
            "document": self.folder / "documents" / f"{entry['id']}.{entry['version']}.json",
            "passages": self.folder / "passages" / f"{stem}.jsonl",
            "vectors": self.folder / "vectors" / f"{stem}.npy",
            "pending": self.folder / "pending" / stem,
        }

    def document(self, doc_id: str) -> Document:
        """A document of the collection, with its full text."""
        entry = next((e for e in self.entries() if e["id"] == doc_id), None)
        if entry is None:
            raise KeyError(f"no document {doc_id!r} in collection {self.name!r}")
        return self._read_document(self._paths(entry)["document"])

    @staticmethod
    def _read_document(path: Path) -> Document:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Document(**{**data, "pages": tuple(data.get("pages") or ())})

    def read_passages(self, entry: dict) -> tuple[list[Chunk], np.ndarray]:
        """A document's passages and vectors, checked against the manifest (a ValueError if they do not match)."""
        paths = self._paths(entry)
        for kind in ("passages", "vectors"):
            if sha256_file(paths[kind]) != entry["files"].get(kind):
                raise ValueError(f"{paths[kind].name} does not match the manifest")
        chunks = [Chunk(**json.loads(line)) for line in paths["passages"].read_text(encoding="utf-8").splitlines()]
        vectors = np.load(paths["vectors"], allow_pickle=False)
        if len(chunks) != entry["passages"] or vectors.shape[0] != len(chunks):
            raise ValueError(f"the passages and vectors of {entry['id']!r} do not match in number")
        return chunks, vectors

    def load(self, documents: list[Document] | None = None) -> PassageIndex | None:
        """The collection's index if it is intact, built with today's embedder
        and chunking (and, when ``documents`` are given, holds exactly them);
        else None, with the reason logged."""
        try:
            manifest = self.read_manifest()
            if manifest is None:
                log.info("Collection %s does not exist yet", self.folder)
                return None
            stale = [k for k, v in self.built_from().items() if manifest["built_from"].get(k) != v]
            if stale:
                log.warning("Collection %s is out of date (%s); rebuilding", self.folder, ", ".join(stale))
                return None
            if documents is not None and {(e["id"], e["version"]) for e in manifest["documents"]} != {
                    (d.id, d.sha256[:16]) for d in documents}:
                log.info("Collection %s holds other documents; updating it", self.folder)
                return None
            milvus = self.milvus(manifest["documents"])
            store = milvus or self._file_store(manifest["documents"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("Collection %s is damaged (%s); rebuilding", self.folder, error)
            return None
        if milvus is not None and not milvus.complete():
            log.warning("The store %s lacks passages of collection %s; filling it from the collection's files",
                        self.store, self.name)
            return None
        info = {e["id"]: {"title": e.get("title", e["id"]), "pages": e.get("pages") or [], "source": e.get("source"),
                          "version": e["version"]}
                for e in manifest["documents"]}
        return PassageIndex(store, info)

    def _file_store(self, entries: list[dict]) -> FileStore:
        """The file store of ``entries``: their files checked against the manifest, and read."""
        chunks, blocks = [], []
        for entry in entries:
            document_chunks, vectors = self.read_passages(entry)
            chunks.extend(document_chunks)
            blocks.append(vectors)
        keywords = KeywordIndex.load_or_build(self.folder / "keywords", self._keywords_key(entries),
                                              [c.text for c in chunks])
        return FileStore(chunks, blocks, keywords, self.flat_limit)

    def _keywords_key(self, entries: list[dict]) -> str:
        return KeywordIndex.key([self._paths(e)["passages"].name for e in entries])

    # Writing.

    @contextmanager
    def writing(self):
        """The collection's write lock: threads of this process wait their
        turn; another process holding it is a clear error, not a wait."""
        from filelock import FileLock, Timeout

        with _thread_lock(self.folder):
            lock = FileLock(str(self.folder / LOCK), timeout=0)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                lock.acquire()
            except Timeout:
                raise CollectionBusy(f"Another process is changing collection {self.name!r} ({self.folder}); "
                                     "try again when it has finished.") from None
            except OSError as error:
                raise storage_error(error, self.name, self.folder) from None
            try:
                yield
            except OSError as error:  # what was written before the fault is not listed: the collection is as it was
                raise storage_error(error, self.name, self.folder) from None
            finally:
                lock.release()

    def _manifest_for(self, entries: list[dict]) -> None:
        manifest = {"format_version": FORMAT_VERSION, "name": self.name, "built_from": self.built_from(),
                    "documents": entries}
        with atomic_file(self.folder / MANIFEST) as out:
            out.write(json.dumps(manifest, ensure_ascii=False, indent=1).encode())

    def _readable_entries(self) -> list[dict]:
        try:
            manifest = self.read_manifest()
        except ValueError as error:
            log.warning("Collection %s: %s; recovering its documents from their stored text", self.folder, error)
            return self._entries_from_stored_documents()
        return manifest["documents"] if manifest else []

    def stored_documents(self) -> list[Document]:
        """The documents whose text the collection holds (the manifest's, or
        those recovered from their stored text): what can still be answered
        from memory when the folder cannot be written."""
        documents = []
        for entry in self._readable_entries():
            try:
                documents.append(self._read_document(self._paths(entry)["document"]))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("Document %r of collection %s cannot be read: add it again", entry["id"], self.name)
        return documents

    def _entries_from_stored_documents(self) -> list[dict]:
        """Entries for the documents whose text is stored (the newest version of each)."""
        latest: dict[str, tuple[float, dict]] = {}
        folder = self.folder / "documents"
        for path in folder.glob("*.json") if folder.is_dir() else ():
            try:
                document = self._read_document(path)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            entry = {"id": document.id, "version": document.sha256[:16], "key": "", "files": {}, "passages": 0}
            mtime = path.stat().st_mtime
            if document.id not in latest or latest[document.id][0] < mtime:
                latest[document.id] = (mtime, entry)
        return [entry for _, entry in sorted(latest.values(), key=lambda pair: pair[0])]

    def _index_document(self, document: Document, chunks: list[Chunk], done: int, total: int,
                        progress: Progress | None) -> tuple[dict, int]:
        """Embed a document batch by batch (reusing batches left by an interrupted
        run) and write its files; returns its manifest entry and how many passages were reused."""
        key = self.key()
        entry = {"id": document.id, "version": document.sha256[:16], "key": key}
        paths = self._paths(entry)
        if not paths["document"].exists():
            with atomic_file(paths["document"]) as out:
                out.write(json.dumps(asdict(document), ensure_ascii=False).encode())
        paths["pending"].mkdir(parents=True, exist_ok=True)
        milvus = self.milvus()
        batches, reused = [], 0
        for number, begin in enumerate(range(0, len(chunks), self.batch_size)):
            batch = chunks[begin : begin + self.batch_size]
            path = paths["pending"] / f"{number:06d}.npy"
            if batch_done(path, len(batch)):
                reused += len(batch)
                vectors = np.load(path) if milvus is not None else None
            else:
                vectors = np.asarray(self.embedder.embed_passages([c.text for c in batch]), dtype=np.float32)
                with atomic_file(path) as out:
                    np.save(out, vectors)
            if milvus is not None:  # inserted as embedded; the manifest lists them once all are in
                milvus.write(self.stem(entry), begin, batch, vectors)
            batches.append(path)
            if progress:
                progress(done + begin + len(batch), total, document.title)
        dimension = np.load(batches[0], mmap_mode="r").shape[1]
        with atomic_file(paths["vectors"]) as out:  # the batches joined, one in memory at a time
            header = {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": (len(chunks), dimension)}
            np.lib.format.write_array_header_1_0(out, header)
            for path in batches:
                out.write(np.load(path).astype(np.float32, copy=False).tobytes())
        with atomic_file(paths["passages"]) as out:
            out.write("".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks).encode())
        entry.update({
            "title": document.title, "source": document.source, "date": document.date,
            "pages": list(document.pages), "file_sha256": document.file_sha256, "passages": len(chunks),
            "files": {"passages": sha256_file(paths["passages"]), "vectors": sha256_file(paths["vectors"])},
        })
        return entry, reused

    def _commit(self, entries: list[dict], progress: Progress | None, pending: list[Document],
                fill: bool = False) -> int:
        """Index ``pending`` documents, then switch the manifest to ``entries``
        with theirs put in place, then delete the files nothing lists any more.
        With ``fill``, the Milvus store is given the passages of the other ``entries``
        it lacks, from their files. Returns the passages reused from an interrupted run."""
        chunked = [(document, self.splitter.run([document])) for document in pending]
        done, total, reused = 0, sum(len(chunks) for _, chunks in chunked), 0
        by_id = {e["id"]: e for e in entries}
        for document, chunks in chunked:
            by_id[document.id], document_reused = self._index_document(document, chunks, done, total, progress)
            done += len(chunks)
            reused += document_reused
        final = list(by_id.values())
        if fill:
            self._fill_milvus([e for e in final if e["id"] not in {d.id for d in pending}])
        self._switch_to(final)
        return reused

    def _fill_milvus(self, entries: list[dict]) -> None:
        """Give the Milvus store the passages of ``entries`` it lacks (a new or damaged store), from their files."""
        milvus = self.milvus(entries)
        if milvus is None or milvus.complete():
            return
        fresh = not milvus.exists  # a new or lost store lacks everything: nothing to count
        for entry in entries:
            if fresh or milvus.held(self.stem(entry)) != entry["passages"]:
                chunks, vectors = self.read_passages(entry)
                for begin in range(0, len(chunks), self.batch_size):
                    end = begin + self.batch_size
                    milvus.write(self.stem(entry), begin, chunks[begin:end], vectors[begin:end])

    def _switch_to(self, entries: list[dict]) -> None:
        """Make ``entries`` the collection: the manifest first, then the files nothing lists
        deleted, then what the store searches follows: the Milvus store's other rows
        deleted, or the file store's keyword index of the new set of passages saved, so
        that the next load, in this process or another, reads it instead of building it."""
        self._manifest_for(entries)
        self._clean(entries)
        milvus = self.milvus(entries)
        if milvus is not None:
            milvus.keep_only()
            return
        try:
            texts = [json.loads(line)["text"] for e in entries
                     for line in self._paths(e)["passages"].read_text(encoding="utf-8").splitlines()]
        except (OSError, ValueError, KeyError) as error:  # the next load repairs the collection and builds it
            log.info("The keyword index of %s was not built (%s)", self.folder, error)
            return
        KeywordIndex.load_or_build(self.folder / "keywords", self._keywords_key(entries), texts)

    def _clean(self, entries: list[dict]) -> None:
        """Delete the files the manifest does not list (older versions, removed documents)."""
        keep = {p for e in entries for k, p in self._paths(e).items() if k != "pending"}
        for kind in ("documents", "passages", "vectors"):
            for path in (self.folder / kind).glob("*"):
                if path not in keep:
                    path.unlink(missing_ok=True)
        # Batches of a document added now are done; those of an interrupted add
        # of another file stay, to resume it, unless made with other settings.
        listed, key = {self._paths(e)["pending"] for e in entries}, self.key()
        for path in (self.folder / "pending").glob("*"):
            if path in listed or not path.name.endswith("." + key):
                shutil.rmtree(path, ignore_errors=True)
        KeywordIndex.clean(self.folder / "keywords", self._keywords_key(entries))

    def _needs_indexing(self, entry: dict, force: bool = False) -> bool:
        if force or entry.get("key") != self.key():
            return True
        try:
            self.read_passages(entry)
        except (OSError, ValueError, KeyError, TypeError):
            return True
        return False

    def repair(self, seed: list[Document] | None = None, progress: Progress | None = None,
               force: bool = False) -> None:
        """Re-embed what is stale or damaged from the stored text (all of it
        when the embedder or chunking changed, or ``force``); a collection that
        never existed gets ``seed``."""
        with self.writing():
            entries = self._readable_entries()
            if not entries and seed and not self.exists:
                self._sync_locked(seed, progress, force)
                return
            pending, kept = [], []
            for entry in entries:
                if not self._needs_indexing(entry, force):
                    kept.append(entry)
                    continue
                try:
                    document = self._read_document(self._paths(entry)["document"])
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("Document %r of collection %s is damaged and was dropped: add it again",
                                entry["id"], self.name)
                    continue
                pending.append(document)
                kept.append(entry)
            self._commit(kept, progress, pending, fill=True)

    def sync(self, documents: list[Document], progress: Progress | None = None, force: bool = False) -> None:
        """Make the collection hold exactly ``documents``, indexing only what changed (all with ``force``)."""
        with self.writing():
            self._sync_locked(documents, progress, force)

    def _sync_locked(self, documents: list[Document], progress: Progress | None, force: bool = False) -> None:
        current = {e["id"]: e for e in self._readable_entries()}
        kept, pending = [], []
        for document in documents:
            entry = current.get(document.id)
            if entry and entry["version"] == document.sha256[:16] and not self._needs_indexing(entry, force):
                kept.append(entry)
            else:
                pending.append(document)
        self._commit(kept, progress, pending, fill=True)

    def add(self, paths: Iterable[str | Path], progress: Progress | None = None,
            limits: ReadLimits | None = None, names: list[str] | None = None) -> AddReport:
        """Add files (a folder adds the supported files under it), each read in
        a process of its own within ``limits``. A file with the content of one
        already in the collection is recognised and skipped; a changed file
        replaces its earlier version. Files that cannot be read are reported in
        ``failed`` and change nothing."""
        report = AddReport()
        documents: list[tuple[str, Document]] = []
        for path, name in expand(paths, names):  # read before the lock: a slow file holds up no other writer
            try:
                documents.append((name, read_document(path, name, limits or ReadLimits())))
            except UnreadableDocument as error:
                report.failed[name] = error.refusal
        with self.writing():
            entries = self._readable_entries()
            by_sha = {e.get("file_sha256"): e["id"] for e in entries if e.get("file_sha256")}
            by_id = {e["id"]: e for e in entries}
            pending: list[Document] = []
            for name, document in documents:
                if document.file_sha256 in by_sha or any(document.file_sha256 == d.file_sha256 for d in pending):
                    report.unchanged.append(name)
                    continue
                if any(document.id == d.id for d in pending):
                    report.failed[name] = refusal("same_name", name=name)
                    continue
                (report.replaced if document.id in by_id else report.added).append(name)
                pending.append(document)
            if pending:
                report.resumed = self._commit(entries, progress, pending)
        return report

    def remove(self, doc_ids: Iterable[str]) -> list[str]:
        """Remove documents by id; returns the ids removed. Unknown ids are an error, and remove nothing."""
        doc_ids = list(doc_ids)
        with self.writing():
            entries = self._readable_entries()
            known = {e["id"] for e in entries}
            unknown = [d for d in doc_ids if d not in known]
            if unknown:
                raise ValueError(f"no document {', '.join(map(repr, unknown))} in collection {self.name!r} "
                                 f"(rag list --collection {self.name} shows its documents)")
            final = [e for e in entries if e["id"] not in doc_ids]
            self._switch_to(final)
        return doc_ids


def expand(paths: Iterable[str | Path], names: list[str] | None = None) -> list[tuple[Path, str]]:
    """(path, name) of each file to add: folders give their supported files, in order."""
    files: list[tuple[Path, str]] = []
    for number, path in enumerate(map(Path, paths)):
        if path.is_dir():
            files.extend((p, p.name) for p in sorted(path.rglob("*"))
                         if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith("."))
        else:
            files.append((path, names[number] if names else path.name))
    return files
