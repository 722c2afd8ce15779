"""Indexing at scale: how fast a large text is added to a collection, with
how much memory, and how fast questions are then answered from it; and which
FAISS index suits which collection size.

The corpus is made from the paragraphs of SQuAD-format files (each paragraph
once, in order, repeated until the size asked), so anyone with the same
files gets the same text.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path

import numpy as np

from rag.evaluation.bench import timed_questions
from rag.evaluation.reader import percentiles_ms


def read_squad_paragraphs(path: str | Path) -> list[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return [p["context"] for article in data["data"] for p in article["paragraphs"]]


def write_corpus(sources: list[str | Path], megabytes: float, out: Path) -> dict:
    """One text of at least ``megabytes`` MB (UTF-8) from the unique paragraphs
    of ``sources``; returns what it holds."""
    paragraphs = list(dict.fromkeys(p for source in sources for p in read_squad_paragraphs(source)))
    target, size, written = int(megabytes * 2**20), 0, 0
    with out.open("w", encoding="utf-8") as handle:
        for paragraph in cycle(paragraphs):
            if size >= target:
                break
            data = paragraph.strip() + "\n\n"
            handle.write(data)
            size += len(data.encode())
            written += 1
    return {"corpus_mb": round(size / 2**20, 2), "paragraphs": written, "unique_paragraphs": len(paragraphs)}


def timed_child(command: list[str], env: dict) -> dict:
    """Run a command; its wall time and peak resident memory."""
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def bench_indexing(corpus: Path, questions: str, rounds: int = 2, index_dir: Path | None = None) -> dict:
    """``rag add`` of ``corpus`` into a new collection, in a process of its
    own (time, passages per second, peak memory); then warm question latency
    on that collection, in another process."""
    with tempfile.TemporaryDirectory(prefix="rag-bench-index-") as scratch:
        index_dir = Path(index_dir or scratch)
        env = {**os.environ, "RAG_INDEX_DIR": str(index_dir)}
        add = timed_child([sys.executable, "-m", "rag", "add", str(corpus), "--collection", "bench"], env)
        listing = json.loads(timed_child([sys.executable, "-m", "rag", "list", "--json", "--collection", "bench"],
                                         env)["output"])
        passages = sum(entry["passages"] for entry in listing)
        latency = timed_questions({"index_dir": str(index_dir), "collection": "bench"}, questions, rounds)
    return {
        "corpus_mb": round(corpus.stat().st_size / 2**20, 2),
        "passages": passages,
        "add_s": round(add["seconds"], 1),
        "passages_per_s": round(passages / add["seconds"], 1),
        "add_peak_rss_mb": round(add["peak_rss_mb"], 1),
        "index": latency["index"],
        "collection_load_s": round(latency["load_s"], 2),
        "questions_timed": len(latency["seconds"]),
        **percentiles_ms(latency["seconds"], "query"),
        "cpu_threads": os.cpu_count(),
    }


def grown(vectors: np.ndarray, size: int, noise: float, seed: int = 0) -> np.ndarray:
    """``size`` unit vectors from real ones: each a real vector plus Gaussian
    noise (``noise`` per dimension), so a larger collection keeps the real
    vectors' geometry (clusters, directions) without embedding it."""
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), size)]
    noisy = picked + rng.normal(0, noise, picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def bench_ann(vectors: np.ndarray, queries: np.ndarray, sizes: list[int], noise: float = 0.03,
              k: int = 10) -> list[dict]:
    """For each size: build time, query latency (one query at a time, as a
    question is asked) and recall@k against the exact (flat) search, for a
    flat index, HNSW (M=32) at several efSearch, and IVF at several nprobe."""
    import faiss

    rows = []
    for size in sizes:
        data = grown(vectors, size, noise)
        dimension = data.shape[1]
        flat = faiss.IndexFlatIP(dimension)
        flat.add(data)
        exact = flat.search(queries, k)[1]
        candidates = [("flat", None, flat, 0.0)]
        began = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(data)
        hnsw_build = time.perf_counter() - began
        for ef in (64, 128, 256):
            candidates.append((f"hnsw32 efSearch={ef}", ("hnsw", ef), hnsw, hnsw_build))
        began = time.perf_counter()
        lists = int(4 * np.sqrt(size))
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(data[np.random.default_rng(1).choice(size, min(size, 64 * lists), replace=False)])
        ivf.add(data)
        ivf_build = time.perf_counter() - began
        for probes in (8, 32):
            candidates.append((f"ivf{lists} nprobe={probes}", ("ivf", probes), ivf, ivf_build))
        for name, knob, index, build in candidates:
            if knob and knob[0] == "hnsw":
                index.hnsw.efSearch = knob[1]
            elif knob:
                index.nprobe = knob[1]
            seconds, found = [], []
            for query in queries:
                began = time.perf_counter()
                found.append(index.search(query[None, :], k)[1][0])
                seconds.append(time.perf_counter() - began)
            recall = np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)])
            rows.append({"vectors": size, "index": name, "build_s": round(build, 1),
                         "query_ms_p50": round(float(np.percentile(seconds, 50)) * 1000, 3),
                         f"recall@{k}": round(float(recall), 4)})
    return rows
