"""Hybrid retrieval: BM25 keyword search and dense search fused by reciprocal
rank. Dense vectors alone rank exact names (people, products) poorly; BM25
alone misses paraphrases and the other language; fusing both ranks gives the
reader the passage in either case."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.documents import Chunk
from rag.index.collection import PassageIndex

RRF_K = 60  # the usual damping constant of reciprocal rank fusion


@dataclass
class RetrievedPassage:
    chunk: Chunk
    score: float  # fused reciprocal-rank score
    dense_rank: int | None
    keyword_rank: int | None
    similarity: float  # cosine of the question and the passage (dense embeddings)


class HybridRetriever:
    """The store's BM25 and dense searches, fused by reciprocal rank."""

    def __init__(self, embedder, index: PassageIndex, candidates: int = 10) -> None:
        self.embedder = embedder
        self.index = index
        self.candidates = candidates

    def keyword_search(self, query: str) -> list[int]:
        return self.index.keyword_search(query, self.candidates)

    def dense_search(self, vector: np.ndarray) -> list[int]:
        return [i for i, _ in self.index.search(vector, self.candidates)]

    def run(self, queries: list[str], top_k: int) -> list[RetrievedPassage]:
        """Fuse the dense and keyword rankings of every query (a question and,
        for follow-ups, the question with its context) into one list; each
        passage's ``similarity`` is to the first query, the question itself."""
        fused: dict[int, float] = {}
        dense_rank: dict[int, int] = {}
        keyword_rank: dict[int, int] = {}
        vectors = self.embedder.embed_queries(queries)
        for query, vector in zip(queries, vectors):
            for ranking, best in ((self.dense_search(vector), dense_rank), (self.keyword_search(query), keyword_rank)):
                for rank, passage in enumerate(ranking):
                    fused[passage] = fused.get(passage, 0.0) + 1.0 / (RRF_K + rank + 1)
                    best[passage] = min(best.get(passage, rank), rank)
        ordered = sorted(fused, key=lambda p: fused[p], reverse=True)[:top_k]
        similarities = self.index.similarities(vectors[0], ordered)
        return [
            RetrievedPassage(self.index.chunks[p], fused[p], dense_rank.get(p), keyword_rank.get(p), similarity)
            for p, similarity in zip(ordered, similarities)
        ]
