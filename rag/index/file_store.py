"""The file store, the embedded default: a collection's vectors in a FAISS
index and its words in a BM25 index, both in the answering process, read
from the collection's folder (nothing to install or start)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.documents import Chunk
from rag.index.keywords import KeywordIndex

DIMENSION = 384  # of an empty index: the built-in embedder's


def vector_index(blocks: list[np.ndarray], flat_limit: int):
    """A flat (exact) inner-product index, or an HNSW graph above ``flat_limit`` passages."""
    import faiss

    dimension = blocks[0].shape[1] if blocks else DIMENSION
    if sum(len(b) for b in blocks) > flat_limit:
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 256
    else:
        index = faiss.IndexFlatIP(dimension)
    for block in blocks:
        index.add(np.ascontiguousarray(block, dtype=np.float32))
    return index


class FileStore:
    """Passages numbered in the collection's order; both searches give numbers."""

    def __init__(self, chunks: list[Chunk], blocks: list[np.ndarray], keywords: KeywordIndex | None = None,
                 flat_limit: int = 1_000_000) -> None:
        self.chunks = chunks
        self.faiss_index = vector_index(blocks, flat_limit)
        # built from the passages when not given (an index kept in memory only)
        self.keywords = keywords or KeywordIndex.build([c.text for c in chunks])

    def count(self) -> int:
        return len(self.chunks)

    def dense_search(self, vector: np.ndarray, k: int) -> list[int]:
        return [number for number, _ in self.scored_search(vector, k)]

    def scored_search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(passage number, cosine similarity) pairs, best first."""
        k = min(k, len(self.chunks))
        if k == 0:
            return []
        scores, ids = self.faiss_index.search(vector.reshape(1, -1).astype(np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def keyword_search(self, query: str, k: int) -> list[int]:
        return self.keywords.search(query, k)

    def passages(self, keys: Sequence[int], vector: np.ndarray) -> dict[int, tuple[Chunk, float]]:
        if not keys:
            return {}
        vectors = np.stack([self.faiss_index.reconstruct(int(p)) for p in keys])
        return {p: (self.chunks[p], float(s)) for p, s in zip(keys, vectors @ vector.astype(np.float32))}
