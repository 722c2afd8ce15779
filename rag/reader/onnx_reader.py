"""The built-in reader on the lean query path: the same windows and span
decoding as :class:`ExtractiveReader`, the logits from its ONNX export run by
an ONNX engine (onnxruntime or OpenVINO) on word embeddings looked up in the table it shares with the
embedder. No torch, no transformers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embedding.batching import ENGINE_WIDTH_MULTIPLE, padded_batch
from rag.embedding.engine import load_graph
from rag.embedding.onnx_export import READER
from rag.reader.reader import Calibration, ExtractiveReader
from rag.reader.windows import Window


class OnnxReader(ExtractiveReader):
    """An :class:`ExtractiveReader` whose model is an ONNX export (its logits
    equal the model's in f32); ``tokenizer`` (a ``tokenizers.Tokenizer``) and
    ``word_embeddings`` come from the embedder."""

    def __init__(self, export_dir: Path, tokenizer, word_embeddings: np.ndarray,
                 calibration: Calibration | None = None, threads: int | None = None,
                 max_answer_tokens: int = 48, engine: str = "onnxruntime", precision: str = "auto",
                 compiled_cache: Path | None = None) -> None:
        super().__init__(str(export_dir / READER), threads=threads, calibration=calibration, bf16=False,
                         tokenizer=tokenizer, max_answer_tokens=max_answer_tokens)
        self.word_embeddings = word_embeddings
        self.engine = engine
        self.precision = precision
        self.compiled_cache = compiled_cache

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = load_graph(Path(self.model_name), self.engine, self.precision, self.threads,
                                         self.compiled_cache)

    def logits(self, windows: list[Window]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Start and end logits for each window, batched."""
        self.warm_up()
        pad = self._tokenizer.token_to_id("<pad>")
        results = []
        for begin in range(0, len(windows), self.batch_size):
            batch = windows[begin : begin + self.batch_size]
            ids, mask = padded_batch([w.input_ids for w in batch], pad, ENGINE_WIDTH_MULTIPLE)
            starts, ends = self._model.run({"inputs_embeds": self.word_embeddings[ids].astype(np.float32),
                                            "attention_mask": mask})
            for row, window in enumerate(batch):
                n = len(window.input_ids)
                results.append((starts[row, :n], ends[row, :n]))
        return results
