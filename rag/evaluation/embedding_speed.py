"""Ways to embed passages faster, each measured against the model's own
definition (sentence-transformers in fp32): passages per second, and the
lowest cosine between its vectors and the definition's. Indexing keeps only
a way whose cosine stays at 0.999 or more.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from rag.embedding import Embedder
from rag.embedding.engine import cpu_has_fast_bf16, inference_precision
from rag.embedding.onnx_embedder import PROMPTS, OnnxEmbedder


def timed(embed: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[float, np.ndarray]:
    embed(texts[:8])  # first calls allocate; time the steady state
    began = time.perf_counter()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    return len(texts) / (time.perf_counter() - began), vectors


def embedding_variants(definition: Embedder, lean: OnnxEmbedder, texts: list[str]) -> list[dict]:
    """sentence-transformers fp32 and (where the CPU multiplies bfloat16
    natively) bfloat16 autocast; onnxruntime in f32 and OpenVINO in each
    precision the CPU runs natively, at two batch sizes (passages sorted by length).

    The engines are timed first: after torch has run, its idle threads keep
    spinning for a while and slow down whatever runs next (about a fifth of
    OpenVINO's throughput here), which indexing, without torch, never meets."""
    import torch

    engines: list[tuple[str, Callable[[list[str]], np.ndarray]]] = []
    ways = [("onnxruntime", "f32")] + [("openvino", p) for p in sorted({"f32", inference_precision("auto")})]
    for engine_name, precision in ways:
        engine = OnnxEmbedder(definition, lean.export_dir, lean.tokenizer, threads=lean.threads, engine=engine_name,
                              precision=precision, compiled_cache=lean.compiled_cache)
        for batch_size in (16, 64):
            def run(batch: list[str], embedder: OnnxEmbedder = engine, size: int = batch_size) -> np.ndarray:
                embedder.batch_size = size
                return embedder._encode(batch, PROMPTS["passage"])
            label = "OpenVINO" if engine_name == "openvino" else "onnxruntime"
            engines.append((f"{label} {precision}, batches of {batch_size} sorted by length", run))
    timed_engines = [(name, *timed(embed, texts)) for name, embed in engines]

    def autocast(batch: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return definition.embed_passages(batch)

    reference_speed, reference = timed(definition.embed_passages, texts)
    rows = [{"variant": "sentence-transformers fp32 (the definition)", "passages_per_s": reference_speed}]
    measured = ([("sentence-transformers, bfloat16 autocast", *timed(autocast, texts))]
                if cpu_has_fast_bf16() else [])  # elsewhere bfloat16 is emulated, and slower than fp32
    for name, speed, vectors in measured + timed_engines:
        cosines = (vectors * reference).sum(axis=1) / np.linalg.norm(vectors, axis=1)
        rows.append({"variant": name, "passages_per_s": speed, "min_cosine": float(cosines.min())})
    return [{k: round(v, 6 if k == "min_cosine" else 1) if isinstance(v, float) else v for k, v in row.items()}
            for row in rows]
