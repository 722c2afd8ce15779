"""The built-in embedder on the lean path: ``tokenizers`` and an ONNX engine
(onnxruntime or OpenVINO), no torch, no transformers, no sentence-transformers.

It computes what the sentence-transformers model computes (prompt, tokens,
encoder, mean pooling, normalization) from the ONNX export of the same
weights, for questions and for the passages indexed. sentence-transformers
stays the model's definition: the export is made from it.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from rag.embedding.batching import ENGINE_WIDTH_MULTIPLE, padded_batch
from rag.embedding.embedder import Embedder
from rag.embedding.engine import load_graph
from rag.embedding.materialize import SENTENCE_TRANSFORMERS_FILES
from rag.embedding.onnx_export import EMBEDDER, WORD_EMBEDDINGS
from rag.embedding.tokenizer_lock import tokenizer_lock

PROMPTS = SENTENCE_TRANSFORMERS_FILES["config_sentence_transformers.json"]["prompts"]
MAX_TOKENS = SENTENCE_TRANSFORMERS_FILES["sentence_bert_config.json"]["max_seq_length"]


def load_tokenizer(model_dir: Path):
    """The Rust tokenizer of a materialized model folder."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


class OnnxEmbedder:
    """Question and passage vectors from the ONNX export of the
    sentence-transformers ``definition``, run by ``engine`` (:mod:`rag.embedding.engine`)."""

    def __init__(self, definition: Embedder, export_dir: Path, tokenizer=None, threads: int | None = None,
                 batch_size: int = 16, engine: str = "onnxruntime", precision: str = "auto",
                 compiled_cache: Path | None = None) -> None:
        self.definition = definition
        self.export_dir = export_dir
        self.threads = threads
        self.batch_size = batch_size
        self.engine = engine
        self.precision = precision
        self.compiled_cache = compiled_cache
        self._tokenizer = tokenizer
        self._session = None
        self._table: np.ndarray | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is None:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(Path(self.definition.model_path()))
                self._table = np.load(self.export_dir / WORD_EMBEDDINGS, mmap_mode="r")
                self._session = load_graph(self.export_dir / EMBEDDER, self.engine, self.precision, self.threads,
                                           self.compiled_cache)

    @property
    def tokenizer(self):
        self.warm_up()
        return self._tokenizer

    @property
    def word_embeddings(self) -> np.ndarray:
        """The fp16 word-embedding table (memory-mapped), shared with the reader."""
        self.warm_up()
        return self._table

    @property
    def identity(self) -> str:
        return self.definition.identity

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        self.warm_up()
        tokenizer = self._tokenizer
        with tokenizer_lock(tokenizer):
            tokenizer.enable_truncation(MAX_TOKENS)
            try:
                encodings = tokenizer.encode_batch([prompt + text for text in texts])
            finally:
                tokenizer.no_truncation()
        pad = tokenizer.token_to_id("<pad>")
        vectors = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # little padding per batch
        for begin in range(0, len(order), self.batch_size):
            rows = order[begin : begin + self.batch_size]
            ids, mask = padded_batch([encodings[i].ids for i in rows], pad, ENGINE_WIDTH_MULTIPLE)
            (tokens,) = self._session.run({"inputs_embeds": self._table[ids].astype(np.float32),
                                           "attention_mask": mask})
            pooled = (tokens * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            vectors[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return vectors

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, PROMPTS["query"])

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Passages for the index: the vectors of sentence-transformers' definition
        (cosine at least 0.999, a test), faster, and with no torch."""
        return self._encode(texts, PROMPTS["passage"])
