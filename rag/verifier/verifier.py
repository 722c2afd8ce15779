"""The answerability verifier: a second reading of each candidate span. A
cross-encoder scores (question, span marked in its sentence) for "this span
answers the question"; the reader alone gives wrong spans on questions a
document does not answer nearly the confidence of right ones.

The constructor stores settings; :meth:`warm_up` loads the model (once,
thread-safely); :meth:`run` returns one logit per candidate."""
from __future__ import annotations

import threading

import numpy as np

from rag.embedding.batching import padded_batch
from rag.embedding.engine import cpu_has_fast_bf16
from rag.embedding.tokenizer_lock import tokenizer_lock
from rag.verifier.inputs import encode, marked_context


class Verifier:
    """Scores candidate spans through a transformers sequence classifier with one logit."""

    def __init__(self, model: str, tokenizer=None, batch_size: int = 8, threads: int | None = None,
                 bf16: bool = True, sentences_before: int = 0) -> None:
        self.model_name = model
        self.sentences_before = sentences_before  # what the model was trained to read (its card's recipe)
        self.batch_size = batch_size
        self.threads = threads
        self.bf16 = bf16
        self._model = None
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
            from transformers.utils import logging as hf_logging

            from rag.embedding.weights import compute_in_fp32

            if self.threads:
                torch.set_num_threads(self.threads)
            hf_logging.set_verbosity_error()
            tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(self.model_name)
            model = AutoModelForSequenceClassification.from_pretrained(self.model_name, dtype="auto")
            compute_in_fp32(model)
            self.bf16 = self.bf16 and cpu_has_fast_bf16()
            self._tokenizer, self._model = tokenizer, model.eval()

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def tokenizer(self):
        self.warm_up()
        return self._tokenizer

    def logits(self, inputs: list[list[int]]) -> np.ndarray:
        import torch

        pad = self._tokenizer.pad_token_id
        scores = []
        for begin in range(0, len(inputs), self.batch_size):
            ids, mask = (torch.from_numpy(a) for a in padded_batch(inputs[begin:begin + self.batch_size], pad))
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bf16):
                scores.append(self._model(input_ids=ids, attention_mask=mask).logits[:, 0].float().numpy())
        return np.concatenate(scores)

    def run(self, question: str, candidates: list[tuple[str, int, int]]) -> list[float]:
        """One logit per candidate ``(passage text, span start, span end)``: higher, more likely right."""
        if not candidates:
            return []
        self.warm_up()
        contexts = [marked_context(text, start, end, sentences_before=self.sentences_before)
                    for text, start, end in candidates]
        with tokenizer_lock(self._tokenizer):
            inputs = encode(self._tokenizer, question, contexts)
        return [float(x) for x in self.logits(inputs)]
