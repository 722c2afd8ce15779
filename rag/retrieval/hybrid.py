"""Hybrid retrieval: BM25 keyword search and dense search fused by reciprocal
rank. Dense vectors alone rank exact names (people, products) poorly; BM25
alone misses paraphrases and the other language; fusing both ranks gives the
reader the passage in either case."""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from rag.documents import Chunk
from rag.index.collection import PassageIndex

RRF_K = 60  # the usual damping constant of reciprocal rank fusion
_WORD = re.compile(r"\w\w+")


def fold(text: str) -> str:
    """Lower case without accents, so "fondé", "Fonde" and "FONDÉ" match."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def keyword_tokens(text: str, stopwords: frozenset[str]) -> list[str]:
    return [w for w in _WORD.findall(fold(text)) if w not in stopwords]


@dataclass
class RetrievedPassage:
    chunk: Chunk
    score: float  # fused reciprocal-rank score
    dense_rank: int | None
    keyword_rank: int | None
    similarity: float  # cosine of the question and the passage (dense embeddings)


class HybridRetriever:
    """BM25 (``bm25s``) plus dense FAISS search, fused by reciprocal rank."""

    def __init__(self, embedder, index: PassageIndex, candidates: int = 10) -> None:
        import bm25s
        from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG and logs every build

        self.embedder = embedder
        self.index = index
        self.candidates = candidates
        self.stopwords = frozenset(fold(w) for w in (*STOPWORDS_EN, *STOPWORDS_FRENCH))
        self.bm25 = bm25s.BM25() if index.chunks else None  # a new collection has nothing to index yet
        if self.bm25 is not None:
            corpus = [keyword_tokens(c.text, self.stopwords) or ["\0"] for c in index.chunks]
            self.bm25.index(corpus, show_progress=False)

    def keyword_search(self, query: str) -> list[int]:
        tokens = keyword_tokens(query, self.stopwords)
        if not tokens or self.bm25 is None:
            return []
        scores = self.bm25.get_scores(tokens)
        order = np.argsort(-scores, kind="stable")[: self.candidates]
        return [int(i) for i in order if scores[i] > 0]

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
