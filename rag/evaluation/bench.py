"""Speed and memory of the pipeline: cold start (a new process up to its first
answer), warm latency p50/p95, index build time and peak resident memory."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer import Pipeline
from rag.evaluation.qa import QAItem

COLD_START = """
import time
began = time.perf_counter()
from rag import ask
ask({question!r})
print(time.perf_counter() - began, time.time(), flush=True)
"""


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def cold_start(question: str) -> tuple[float, float]:
    """Seconds from starting a new interpreter to its first answer (models
    already materialized), and the child's own count from its first import.
    The child reports the clock time of its answer, so its exit is not counted."""
    began = time.time()
    result = subprocess.run(
        [sys.executable, "-c", COLD_START.format(question=question)],
        capture_output=True, text=True, env=os.environ.copy(), check=True,
    )
    in_process, answered_at = map(float, result.stdout.split()[-2:])
    return answered_at - began, in_process


def benchmark(pipeline: Pipeline, items: list[QAItem], rounds: int = 3, cold_starts: int = 3) -> dict:
    starts = sorted(cold_start(items[0].question) for _ in range(cold_starts))
    wall, in_process = starts[len(starts) // 2]  # the median start
    child_rss = peak_rss_mb(resource.RUSAGE_CHILDREN)

    pipeline.warm_up()
    with tempfile.TemporaryDirectory() as folder:
        builder = Pipeline(replace(pipeline.settings, index_dir=Path(folder)), pipeline.documents)
        builder.embedder = pipeline.embedder  # the model is loaded; time the indexing itself
        began = time.perf_counter()
        builder.build_index()
        build_seconds = time.perf_counter() - began

    for item in items[:3]:  # one untimed pass fills caches and lazy paths
        pipeline.run(item.question, item.history)
    latencies = []
    for _ in range(rounds):
        for item in items:
            began = time.perf_counter()
            pipeline.run(item.question, item.history)
            latencies.append(time.perf_counter() - began)
    milliseconds = np.array(latencies) * 1000
    return {
        "cold_start_s": round(wall, 2),
        "cold_start_in_process_s": round(in_process, 2),
        "cold_start_max_s": round(starts[-1][0], 2),
        "warm_ms_p50": round(float(np.percentile(milliseconds, 50)), 1),
        "warm_ms_p95": round(float(np.percentile(milliseconds, 95)), 1),
        "questions_timed": len(latencies),
        "index_build_s": round(build_seconds, 3),
        "peak_rss_mb": round(max(peak_rss_mb(), child_rss), 1),
        "cpu_threads": os.cpu_count(),
    }
