"""Hybrid retrieval: BM25 keyword search and dense search fused by reciprocal
rank. Dense vectors alone rank exact names (people, products) poorly; BM25
alone misses paraphrases and the other language; fusing both ranks gives the
reader the passage in either case."""
from __future__ import annotations

from dataclasses import dataclass

from rag.documents import Chunk
from rag.index.passage_index import PassageIndex
from rag.index.store import PassageKey

RRF_K = 60  # the usual damping constant of reciprocal rank fusion


@dataclass
class RetrievedPassage:
    chunk: Chunk
    score: float  # fused reciprocal-rank score
    dense_rank: int | None
    keyword_rank: int | None
    similarity: float  # cosine of the question and the passage (dense embeddings)


class HybridRetriever:
    """The store's BM25 and dense searches, fused here by reciprocal rank, so
    that every store ranks a question's passages the same way (and fuses the
    searches of a follow-up's several queries into one ranking)."""

    def __init__(self, embedder, index: PassageIndex, candidates: int = 10) -> None:
        self.embedder = embedder
        self.index = index  # the loaded collection; its store searches
        self.candidates = candidates

    def run(self, queries: list[str], top_k: int) -> list[RetrievedPassage]:
        """Fuse the dense and keyword rankings of every query (a question and,
        for follow-ups, the question with its context) into one list; each
        passage's ``similarity`` is to the first query, the question itself."""
        fused: dict[PassageKey, float] = {}
        dense_rank: dict[PassageKey, int] = {}
        keyword_rank: dict[PassageKey, int] = {}
        vectors = self.embedder.embed_queries(queries)
        store = self.index.store
        for query, vector in zip(queries, vectors):
            rankings = ((store.dense_search(vector, self.candidates), dense_rank),
                        (store.keyword_search(query, self.candidates), keyword_rank))
            for ranking, best in rankings:
                for rank, passage in enumerate(ranking):
                    fused[passage] = fused.get(passage, 0.0) + 1.0 / (RRF_K + rank + 1)
                    best[passage] = min(best.get(passage, rank), rank)
        ordered = sorted(fused, key=lambda p: fused[p], reverse=True)[:top_k]
        found = store.passages(ordered, vectors[0])
        return [RetrievedPassage(found[p][0], fused[p], dense_rank.get(p), keyword_rank.get(p), found[p][1])
                for p in ordered if p in found]
