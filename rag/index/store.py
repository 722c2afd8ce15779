"""A FAISS inner-product index over normalized passage vectors, with the
passage records and a manifest, persisted without pickle.

Files: ``vectors.faiss`` (FAISS), ``chunks.jsonl`` (one passage a line),
``manifest.json`` (written last). The manifest records what the index was
built from (format, embedder and its weights, chunking, document hashes) and
the hash of each file, so a stale, truncated or corrupt index is detected on
load and rebuilt instead of crashing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.documents import Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
VECTORS, CHUNKS, MANIFEST = "vectors.faiss", "chunks.jsonl", "manifest.json"


@dataclass
class PassageIndex:
    """The loaded index: passages and a FAISS index of their vectors."""

    chunks: list[Chunk]
    faiss_index: object
    saved: bool = True  # False when the folder could not be written and the index lives in memory only

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(passage number, cosine similarity) pairs, best first."""
        k = min(k, len(self.chunks))
        if k == 0:
            return []
        scores, ids = self.faiss_index.search(query_vector.reshape(1, -1).astype(np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def similarities(self, query_vector: np.ndarray, passages: list[int]) -> list[float]:
        """Cosine similarity of the query to each of ``passages`` (by number),
        including passages the dense search did not rank."""
        if not passages:
            return []
        vectors = np.stack([self.faiss_index.reconstruct(int(p)) for p in passages])
        return [float(v) for v in vectors @ query_vector.astype(np.float32)]


def check_manifest_shape(manifest: object) -> None:
    """A manifest is read before anything is trusted: valid JSON of another
    shape (a list, a string where a table belongs) is a broken index, not a crash."""
    if not isinstance(manifest, dict):
        raise ValueError(f"the manifest is a JSON {type(manifest).__name__}, not an object")
    for key in ("built_from", "files"):
        if not isinstance(manifest.get(key), dict):
            raise ValueError(f"the manifest's {key!r} is missing or not an object")
    if not all(isinstance(manifest["files"].get(name), str) for name in (VECTORS, CHUNKS)):
        raise ValueError("the manifest does not list the hash of each file")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class IndexStore:
    """Reads and writes the index folder; one writer at a time per process."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def load(self, expected: dict) -> PassageIndex | None:
        """The stored index if it matches ``expected`` and is intact, else None (with the reason logged)."""
        import faiss

        manifest_path = self.folder / MANIFEST
        if not manifest_path.exists():
            log.info("No index in %s yet", self.folder)
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            check_manifest_shape(manifest)
            stale = {k: v for k, v in expected.items() if manifest["built_from"].get(k) != v}
            if manifest.get("format_version") != FORMAT_VERSION or stale:
                log.warning("Index in %s is out of date (%s); rebuilding", self.folder, ", ".join(stale) or "format")
                return None
            for name in (VECTORS, CHUNKS):
                if _sha256(self.folder / name) != manifest["files"][name]:
                    raise ValueError(f"{name} does not match the manifest")
            chunks = [
                Chunk(**json.loads(line))
                for line in (self.folder / CHUNKS).read_text(encoding="utf-8").splitlines() if line
            ]
            faiss_index = faiss.read_index(str(self.folder / VECTORS))
            if faiss_index.ntotal != len(chunks):
                raise ValueError("vector and passage counts differ")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            log.warning("Index in %s is unreadable (%s); rebuilding", self.folder, error)
            return None
        return PassageIndex(chunks, faiss_index)

    def save(self, chunks: list[Chunk], vectors: np.ndarray, built_from: dict) -> PassageIndex:
        """The index of ``vectors``, written to the folder. A folder that cannot
        be written costs only the saving: the index is used from memory."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        faiss_index.add(vectors)
        try:
            self._write(faiss_index, chunks, built_from)
        except OSError as error:
            log.warning("Could not save the index in %s (%s); using it from memory. Set RAG_INDEX_DIR "
                        "(or --index-dir) to a writable folder to keep it between runs.", self.folder, error)
            return PassageIndex(chunks, faiss_index, saved=False)
        return PassageIndex(chunks, faiss_index)

    def _write(self, faiss_index, chunks: list[Chunk], built_from: dict) -> None:
        import faiss

        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / MANIFEST).unlink(missing_ok=True)  # the old manifest no longer describes the files
            vector_bytes = faiss.serialize_index(faiss_index).tobytes()
            chunk_bytes = "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks).encode()
            _write_atomic(self.folder / VECTORS, vector_bytes)
            _write_atomic(self.folder / CHUNKS, chunk_bytes)
            manifest = {
                "format_version": FORMAT_VERSION,
                "built_from": built_from,
                "passages": len(chunks),
                "files": {
                    VECTORS: hashlib.sha256(vector_bytes).hexdigest(),
                    CHUNKS: hashlib.sha256(chunk_bytes).hexdigest(),
                },
            }
            _write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2).encode())
