"""The built-in verifier on the lean path: the same inputs as
:class:`Verifier`, its logits from the ONNX export run by an ONNX engine on
word embeddings looked up in the table it shares with the embedder and the
reader. No torch, no transformers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embedding.batching import ENGINE_WIDTH_MULTIPLE, padded_batch
from rag.embedding.engine import load_graph
from rag.embedding.onnx_export import VERIFIER
from rag.verifier.verifier import Verifier


class OnnxVerifier(Verifier):
    """A :class:`Verifier` whose model is an ONNX export; ``tokenizer`` (a
    ``tokenizers.Tokenizer``) and ``word_embeddings`` come from the embedder."""

    def __init__(self, export_dir: Path, tokenizer, word_embeddings: np.ndarray, threads: int | None = None,
                 engine: str = "onnxruntime", precision: str = "auto", compiled_cache: Path | None = None,
                 sentences_before: int = 0, int8_weights: bool = False) -> None:
        super().__init__(str(export_dir / VERIFIER), tokenizer=tokenizer, threads=threads, bf16=False,
                         sentences_before=sentences_before)
        self.word_embeddings = word_embeddings
        self.engine = engine
        self.precision = precision
        self.compiled_cache = compiled_cache
        self.int8_weights = int8_weights  # OpenVINO in bf16 only (rag/embedding/int8_weights.py)

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = load_graph(Path(self.model_name), self.engine, self.precision, self.threads,
                                         self.compiled_cache, self.int8_weights)

    @property
    def reading(self) -> str:
        """How it reads once loaded (engine, precision, int8 weights): ``openvino-bf16-int8``."""
        self.warm_up()
        return self._model.reading

    def logits(self, inputs: list[list[int]]) -> np.ndarray:
        pad = self._tokenizer.token_to_id("<pad>")
        scores = []
        for begin in range(0, len(inputs), self.batch_size):
            ids, mask = padded_batch(inputs[begin:begin + self.batch_size], pad, ENGINE_WIDTH_MULTIPLE)
            (logits,) = self._model.run({"inputs_embeds": self.word_embeddings[ids].astype(np.float32),
                                         "attention_mask": mask})
            scores.append(logits[:, 0])
        return np.concatenate(scores)
