"""Passage stores at scale: each store filled with N passages, then timed as
a chat server uses it (load, memory, questions) and checked for the dense
search's recall against an exact scan.

The passages are real: a corpus of SQuAD-format paragraphs (as ``rag
bench-index`` writes it) is added once to a collection kept in the cache and
embedded by the built-in embedder. Larger collections are copies of that
corpus, one document each (a line naming the copy keeps every file its own);
a copy's passages get the real vectors again, moved by Gaussian noise as
``rag bench-ann`` grows them, so that filling a store costs storing, not
embedding, and its vectors keep the real ones' geometry.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer import Pipeline
from rag.evaluation.bench import TIMED_QUESTIONS
from rag.evaluation.indexing import timed_child, write_corpus
from rag.evaluation.reader import percentiles_ms
from rag.evaluation.squad import load_squad
from rag.index import Collection
from rag.index.milvus_store import close_client, is_milvus
from rag.settings import Settings

NOISE = 0.03  # per dimension, as rag bench-ann grows vectors


class ReplayedEmbedder:
    """The base passages' vectors given again for their texts: the first time as
    embedded, each later time moved by noise (another copy's passage). A text the
    base does not hold (a copy's naming line) gets a random unit vector."""

    def __init__(self, identity: str, texts: list[str], vectors: np.ndarray, seed: int = 0) -> None:
        self.identity = identity
        self.vectors = dict(zip(texts, vectors))
        self.seen: Counter[str] = Counter()
        self.rng = np.random.default_rng(seed)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            vector = self.vectors.get(text)
            if vector is None:
                vector = self.rng.normal(0, 1, len(next(iter(self.vectors.values())))).astype(np.float32)
            elif self.seen[text]:
                vector = vector + self.rng.normal(0, NOISE, vector.shape).astype(np.float32)
            self.seen[text] += 1
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32)


def base_passages(settings: Settings, sources: list[str], megabytes: float) -> tuple[Path, list[str], np.ndarray]:
    """The corpus, its passages and their vectors: embedded once, then read from the cache."""
    folder = settings.cache_dir / "bench-stores"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / f"corpus-{megabytes:g}mb.txt"
    if not corpus.exists():
        write_corpus(sources, megabytes, corpus)
    base = Pipeline(replace(settings, index_dir=folder / "index", collection=f"base-{megabytes:g}mb", store="files"))
    base.add([corpus], max_mb=int(megabytes) + 10)
    index = base.collection.load()
    store = index.store
    vectors = np.stack([store.faiss_index.reconstruct(i) for i in range(store.count())])
    return corpus, [c.text for c in store.chunks], vectors


def write_copies(corpus: Path, folder: Path, copies: int, first: int = 0) -> list[Path]:
    """Copies of the corpus, each a file of its own (its last line names it)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = corpus.read_text(encoding="utf-8")
    paths = []
    for number in range(first, first + copies):
        path = folder / f"copy-{number:05d}.txt"
        path.write_text(f"{text}\n\nCopy {number} of the corpus.\n", encoding="utf-8")
        paths.append(path)
    return paths


def served(settings: Settings, questions: str, rounds: int) -> dict:
    """A chat server's view, in a process of its own: load time, question latency, peak memory."""
    job = json.dumps({"settings": {"index_dir": str(settings.index_dir), "collection": settings.collection,
                                   "store": settings.store},
                      "documents": [], "questions": questions, "rounds": rounds})
    child = timed_child([sys.executable, "-c", TIMED_QUESTIONS, job], os.environ.copy())
    timed = json.loads(child["output"].splitlines()[-1])
    return {"load_s": round(timed["load_s"], 2), **percentiles_ms(timed["seconds"], "question"),
            "server_peak_rss_mb": round(child["peak_rss_mb"]), "questions_timed": len(timed["seconds"])}


def dense_recall(collection: Collection, query_vectors: np.ndarray, k: int = 10) -> float:
    """recall@k of the store's dense search against an exact scan of every vector of the collection."""
    entries = collection.entries()
    index = collection.load()
    offsets, blocks, total = {}, [], 0
    for entry in entries:
        offsets[collection.stem(entry)] = total
        blocks.append(collection.read_passages(entry)[1])
        total += entry["passages"]
    every = np.concatenate(blocks)
    found = []
    for vector in query_vectors:
        exact = set(np.argsort(-(every @ vector))[:k].tolist())
        keys = index.store.dense_search(vector, k)
        positions = {int(key) if isinstance(key, int) else offsets[key.rpartition("#")[0]] + int(key.rpartition("#")[2])
                     for key in keys}
        found.append(len(exact & positions) / k)
    return float(np.mean(found))


def bench_store(settings: Settings, sources: list[str], megabytes: float, sizes: list[int], questions: str,
                rounds: int = 2, recall_questions: int = 100, work: Path | None = None) -> Iterator[dict]:
    """For each size, as it is measured: fill a new collection of the store in ``settings`` with about that many
    passages (add throughput), add one more copy to it, then time it as a chat server uses it
    and measure the dense search's recall@10."""
    corpus, texts, vectors = base_passages(settings, sources, megabytes)
    probe = Pipeline(replace(settings, store="files"))
    probe.load_embedder()
    asked = [example.question for source in sources for example in load_squad(source)][:recall_questions]
    query_vectors = probe.embedder.embed_queries(asked)
    with tempfile.TemporaryDirectory(prefix="rag-bench-store-", dir=work) as scratch:
        for size in sizes:
            copies = max(1, round(size / len(texts)))
            where = Path(scratch) / f"n{size}"
            at = replace(settings, index_dir=where / "index", collection="bench")
            if is_milvus(settings.store) and settings.store.endswith(".db"):
                at = replace(at, store=f"milvus:{where / 'store.db'}")
            files = write_copies(corpus, where / "files", copies + 1)
            replayed = ReplayedEmbedder(probe.embedder.identity, texts, vectors)
            collection = Collection(where / "index" / "bench", probe.splitter, replayed, store=at.store,
                                    milvus_token=at.milvus_token, flat_limit=at.hnsw_above)
            began = time.perf_counter()
            collection.add(files[:-1], limits=at.read_limits(int(megabytes) + 10))
            fill_s = time.perf_counter() - began
            passages = sum(e["passages"] for e in collection.entries())
            began = time.perf_counter()
            collection.add(files[-1:], limits=at.read_limits(int(megabytes) + 10))
            add_one_s = time.perf_counter() - began
            close_client(at.store)  # Milvus Lite opens in one process: the timed server's now
            row = {"store": "milvus lite" if at.store.endswith(".db") else settings.store, "passages": passages,
                   "fill_s": round(fill_s, 1), "fill_passages_per_s": round(passages / fill_s),
                   "add_one_copy_s": round(add_one_s, 1), "copy_passages": len(texts),
                   **served(at, questions, rounds)}
            row["dense_recall@10"] = round(dense_recall(collection, query_vectors), 4)
            close_client(at.store)
            shutil.rmtree(where)
            yield row
