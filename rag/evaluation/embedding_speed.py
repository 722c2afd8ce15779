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
from rag.embedding.onnx_embedder import PROMPTS, OnnxEmbedder, onnx_session
from rag.embedding.onnx_export import EMBEDDER


def timed(embed: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[float, np.ndarray]:
    embed(texts[:8])  # first calls allocate; time the steady state
    began = time.perf_counter()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    return len(texts) / (time.perf_counter() - began), vectors


def embedding_variants(definition: Embedder, lean: OnnxEmbedder, texts: list[str], scratch) -> list[dict]:
    """sentence-transformers fp32 and bfloat16 autocast; onnxruntime fp32 at two
    batch sizes (passages sorted by length) and with int8 weights."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rows = []
    reference_speed, reference = timed(definition.embed_passages, texts)
    rows.append({"variant": "sentence-transformers fp32 (the definition)", "passages_per_s": reference_speed})

    def autocast(batch: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return definition.embed_passages(batch)

    variants: list[tuple[str, Callable[[list[str]], np.ndarray]]] = [
        ("sentence-transformers, bfloat16 autocast", autocast)]
    lean.warm_up()
    for batch_size in (16, 64):
        def onnx(batch: list[str], size: int = batch_size) -> np.ndarray:
            lean.batch_size = size
            return lean._encode(batch, PROMPTS["passage"])
        variants.append((f"onnxruntime fp32, batches of {batch_size} sorted by length", onnx))
    quantized = scratch / "embedder-int8.onnx"
    quantize_dynamic(str(lean.export_dir / EMBEDDER), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    int8 = OnnxEmbedder(definition, lean.export_dir, threads=lean.threads)
    int8.warm_up()
    int8._session = onnx_session(quantized, lean.threads)
    variants.append(("onnxruntime int8 weights (dynamic quantization, per channel)",
                     lambda batch: int8._encode(batch, PROMPTS["passage"])))
    for name, embed in variants:
        speed, vectors = timed(embed, texts)
        cosines = (vectors * reference).sum(axis=1) / np.linalg.norm(vectors, axis=1)
        rows.append({"variant": name, "passages_per_s": speed, "min_cosine": float(cosines.min())})
    lean.batch_size = 16
    return [{k: round(v, 6 if k == "min_cosine" else 1) if isinstance(v, float) else v for k, v in row.items()}
            for row in rows]
