"""Speed and memory of both query paths, measured in one run so that their
ratio is taken on the same machine at the same time: the cold start of
``rag ask`` (a new process, from its start to its answer and to its exit,
with its peak memory), warm latency p50/p95 (and the default engine's with
the verifier, whose cost it is, with the verifier's own time per question
timed inside the same run), and each path's passage embedding
throughput (indexing at scale: ``rag bench-index``).

Each path's warm latency is timed in a process of its own, the paths taking
turns (A B A B): in one process, the threads one runtime leaves spinning
after its work slow down the other's next question."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer import Pipeline
from rag.evaluation.qa import load_questions
from rag.evaluation.reader import percentiles_ms
from rag.verifier import builtin_verified_spans

RUNTIMES = ("openvino", "onnxruntime", "torch")
# What the figures depend on, printed with them.
PACKAGES = ("openvino", "onnxruntime", "torch", "transformers", "sentence-transformers", "tokenizers", "numpy", "faiss-cpu", "bm25s")
DECIDING_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def environment(precision: str) -> dict:
    """The versions, CPU flags and engine precision behind a run's figures."""
    from importlib.metadata import PackageNotFoundError, version

    from rag.embedding.engine import cpu_flags, cpu_model, inference_precision

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    flags = cpu_flags()
    return {"python": sys.version.split()[0], "packages": {name: installed(name) for name in PACKAGES},
            "cpu": cpu_model(), "cpu_flags": {flag: flag in flags for flag in DECIDING_FLAGS},
            "openvino_precision": inference_precision(precision), "cpu_threads": os.cpu_count()}


def cold_ask(question: str, runtime: str, index_dir: Path, documents: list[str] = (), precision: str = "auto") -> dict:
    """One ``rag ask`` in a new process: seconds from its start to the first
    line of its answer and to its exit, and its peak resident memory."""
    command = [sys.executable, "-u", "-m", "rag", "--runtime", runtime, "--precision", precision,
               "--index-dir", str(index_dir),
               *(f"--document={d}" for d in documents), "ask", question]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=os.environ.copy())
    child.stdout.readline()  # unbuffered (-u): the line comes as soon as the answer is printed
    answered = time.perf_counter() - began
    child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    exited = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
    return {"to_answer_s": answered, "to_exit_s": exited, "peak_rss_mb": usage.ru_maxrss / 1024}


def median_cold_ask(question: str, runtime: str, index_dir: Path, documents: list[str], runs: int,
                    precision: str = "auto") -> dict:
    results = [cold_ask(question, runtime, index_dir, documents, precision) for _ in range(runs)]
    middle = sorted(results, key=lambda r: r["to_exit_s"])[len(results) // 2]
    return {
        "cold_to_answer_s": round(middle["to_answer_s"], 2),
        "cold_to_exit_s": round(middle["to_exit_s"], 2),
        "cold_to_exit_max_s": round(max(r["to_exit_s"] for r in results), 2),
        "cold_peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
    }


def passage_throughput(pipeline: Pipeline, passages: int = 256) -> float:
    """Passages embedded per second by the pipeline's embedder, as it indexes them."""
    chunks = pipeline.splitter.run(pipeline.documents)
    texts = [chunks[i % len(chunks)].text for i in range(passages)]
    pipeline.embedder.embed_passages(texts[:4])  # time the embedding, not the model's loading
    began = time.perf_counter()
    pipeline.embedder.embed_passages(texts)
    return passages / (time.perf_counter() - began)


TIMED_QUESTIONS = """
import json, sys, time
from rag import Pipeline, Settings
from rag.documents import load_document
from rag.evaluation.qa import load_questions
from rag.verifier import builtin_verified_spans
job = json.loads(sys.argv[1])
documents = [load_document(path) for path in job["documents"]] or None
pipeline = Pipeline(Settings.from_env(**job["settings"]), documents)
began = time.perf_counter()
pipeline.warm_up()
loaded = time.perf_counter() - began
items = load_questions(job["questions"])
for item in items[:3]:  # one untimed pass fills caches and lazy paths
    pipeline.run(item.question, item.history)
seconds, verifier_seconds, spans_read = [], [], []
if pipeline.verifier is not None:  # the verifier's own time on each question, in the same run
    verifier_run = pipeline.verifier.run
    def timed_verifier_run(question, candidates):
        began = time.perf_counter()
        try:
            return verifier_run(question, candidates)
        finally:
            verifier_seconds[-1] += time.perf_counter() - began
            spans_read[-1] += len(candidates)
    pipeline.verifier.run = timed_verifier_run
for _ in range(job["rounds"]):
    for item in items:
        verifier_seconds.append(0.0)
        spans_read.append(0)
        began = time.perf_counter()
        pipeline.run(item.question, item.history)
        seconds.append(time.perf_counter() - began)
index = pipeline.retriever.index
store = index.store
verifier = {"verifier_seconds": verifier_seconds, "spans_read": spans_read} if pipeline.verifier else {}
print(json.dumps({"load_s": loaded, "seconds": seconds, "passages": len(index),
                  "index": type(getattr(store, "faiss_index", store)).__name__, **verifier}))
"""


def timed_questions(settings: dict, questions: str, rounds: int, documents: list[str] = ()) -> dict:
    """Seconds per question in a warm process of its own (the pipeline made
    from ``settings``), with the time it took to load and the index it searched."""
    job = json.dumps({"settings": settings, "documents": list(documents), "questions": questions, "rounds": rounds})
    result = subprocess.run([sys.executable, "-c", TIMED_QUESTIONS, job], capture_output=True, text=True,
                            env=os.environ.copy(), check=True)
    return json.loads(result.stdout.splitlines()[-1])


def verifier_cost(seconds: list[float], spans_read: list[int]) -> dict:
    """p50/p95 of the verifier's time per question, the spans it read on average, and the share it read once."""
    read = np.array(spans_read)
    return {**percentiles_ms(seconds, "verifier"), "verifier_spans_read": round(float(read.mean()), 2),
            "verifier_one_span_share": round(float((read == 1).mean()), 3)}


def benchmark(pipeline: Pipeline, questions: str, rounds: int = 4, cold_starts: int = 3,
              documents: list[str] = ()) -> dict:
    """Both paths on the questions of ``questions`` (a JSONL file or a set
    shipped with the package), over ``documents`` (files; default: the
    embedded article) as ``pipeline`` reads them."""
    items = load_questions(questions)
    index_dir = pipeline.settings.index_dir
    pipeline.load_index()  # the cold starts find the index made, as after rag setup
    report: dict[str, dict] = {
        runtime: median_cold_ask(items[0].question, runtime, index_dir, documents, cold_starts,
                                 pipeline.settings.precision)
        for runtime in RUNTIMES
    }
    # the default engine once more with the verifier reading the reader's best spans again
    default = replace(pipeline.settings, runtime="auto").engine
    paths = {runtime: {"runtime": runtime, "verified_spans": 0} for runtime in RUNTIMES}
    verified_spans = pipeline.settings.verified_spans or builtin_verified_spans()
    paths[f"{default} + verifier"] = {"runtime": default, "verified_spans": verified_spans}
    if default == "openvino":  # and with the verifier's weights as exported, the cost of its int8 weights
        paths[f"{default} + verifier, bf16 weights"] = {"runtime": default, "verified_spans": verified_spans,
                                                         "verifier_int8": False}
    # and reading every span, not only under the early stop: what the early stop saves
    paths[f"{default} + verifier, every span read"] = {"runtime": default, "verified_spans": verified_spans,
                                                       "verifier_early_stop": False}
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    verifier_seconds: dict[str, list[float]] = {path: [] for path in paths}
    spans_read: dict[str, list[int]] = {path: [] for path in paths}
    for _ in range(2):
        for path, chosen in paths.items():
            settings = {**chosen, "index_dir": str(index_dir), "precision": pipeline.settings.precision}
            timed = timed_questions(settings, questions, max(1, rounds // 2), documents)
            latencies[path] += timed["seconds"]
            verifier_seconds[path] += timed.get("verifier_seconds", [])
            spans_read[path] += timed.get("spans_read", [])
    for path, seconds in latencies.items():
        report.setdefault(path, {"verified_spans": paths[path]["verified_spans"]})
        report[path].update(percentiles_ms(seconds, "warm"))
        if verifier_seconds[path]:
            # the verifier's own share of each answer, timed inside the same run: the difference of two
            # paths' p50 moves with the machine's load between their turns, this does not
            report[path].update(verifier_cost(verifier_seconds[path], spans_read[path]))

    for runtime in RUNTIMES:
        embedder_of = Pipeline(replace(pipeline.settings, runtime=runtime), pipeline.documents)
        report[runtime]["passage_embedding_per_s"] = round(passage_throughput(embedder_of), 1)
    return {**report, "questions_timed_per_path": len(latencies["openvino"]),
            "environment": environment(pipeline.settings.precision),
            "default_runtime_here": default}
