"""The passage-store contract: what a collection needs from where its passages
are searched. The collection's folder (manifest, stored texts, passages and
vectors files, the writer's lock) stays the record of what it holds; a store
answers searches over the passages that record lists. Two stores keep it: the
file store (FAISS and BM25 in the answering process, the embedded default) and
the Milvus store (Milvus Lite in a file, or a Milvus server or cluster)."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

import numpy as np

from rag.documents import Chunk

PassageKey = Hashable  # a passage's name in its store: a number in the file store, a string in Milvus


class PassageStore(Protocol):
    """Searches over a collection's passages; both give keys, best first, and
    :meth:`passages` turns the few that are read into text and similarity."""

    def count(self) -> int:
        """How many passages are searched."""

    def dense_search(self, vector: np.ndarray, k: int) -> list[PassageKey]:
        """The ``k`` passages nearest to a query vector (inner product of normalized vectors)."""

    def keyword_search(self, query: str, k: int) -> list[PassageKey]:
        """The ``k`` best passages by BM25 that share a word with ``query``."""

    def passages(self, keys: Sequence[PassageKey], vector: np.ndarray) -> dict[PassageKey, tuple[Chunk, float]]:
        """Each passage with its cosine similarity to the query vector (ranked by a search or not);
        a passage deleted since it was found is left out."""
