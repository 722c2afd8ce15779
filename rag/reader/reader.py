"""Extractive reader: a transformer that scores every token as an answer start
and end; decoding picks the best span across windows and passages, or "no
answer" when the null (``<s>``) reading is more likely.

Works with any Hugging Face extractive QA model (a local folder or a hub id),
such as the project's own bilingual reader or ``deepset/xlm-roberta-base-squad2``.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from rag.embedding.batching import padded_batch
from rag.embedding.engine import cpu_has_fast_bf16
from rag.embedding.tokenizer_lock import tokenizer_lock
from rag.embedding.weights import compute_in_fp32
from rag.reader.windows import Window, make_windows

log = logging.getLogger(__name__)

_TRIM = " \t\n\r\u00a0,;:"


@dataclass
class Span:
    """A candidate answer: character offsets into passage ``passage_index``.

    ``margin`` is the span's score minus its window's no-answer score (the
    SQuAD 2.0 decision value); ``confidence`` maps it through the reader's
    calibration to the probability that answering with this span is right.
    ``score`` ranks spans across passages: the margin plus its passage's prior.
    """

    passage_index: int
    start: int
    end: int
    text: str
    margin: float
    confidence: float
    score: float


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the margin: confidence = sigmoid((margin - offset) / scale)."""

    offset: float = 0.0
    scale: float = 1.0

    def confidence(self, margin: float) -> float:
        return float(1.0 / (1.0 + np.exp(-(margin - self.offset) / self.scale)))


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop surrounding spaces and dangling separators a token boundary dragged in."""
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return start, end


def window_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    window: Window,
    max_answer_tokens: int,
    top_k: int,
) -> list[tuple[float, int, int]]:
    """Best token spans of one window as (margin, start token, end token),
    where margin = start + end logit minus the null (``<s>``) reading's."""
    context = window.context_mask
    scores = start_logits[:, None] + end_logits[None, :]
    n = len(start_logits)
    rows, cols = np.indices((n, n))
    valid = (cols >= rows) & (cols - rows < max_answer_tokens) & context[:, None] & context[None, :]
    null_score = float(start_logits[0] + end_logits[0])
    flat = np.where(valid, scores, -np.inf).ravel()
    best = np.argpartition(-flat, min(top_k, flat.size - 1))[:top_k]
    best = best[np.argsort(-flat[best])]
    return [(float(flat[i] - null_score), int(i // n), int(i % n)) for i in best if np.isfinite(flat[i])]


class ExtractiveReader:
    """Finds the answer span to a question in a list of passages.

    The constructor only stores settings; :meth:`warm_up` loads the model
    (once, thread-safely); :meth:`run` returns plain :class:`Span` objects.
    """

    def __init__(
        self,
        model: str,
        max_length: int = 384,
        stride: int = 128,
        max_question_tokens: int = 64,
        max_answer_tokens: int = 48,
        batch_size: int = 8,
        threads: int | None = None,
        device: str = "cpu",
        calibration: Calibration | None = None,
        bf16: bool = True,
        tokenizer=None,
    ) -> None:
        self.model_name = model
        self.max_length = max_length
        self.stride = stride
        self.max_question_tokens = max_question_tokens
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.device = device
        self.calibration = calibration or Calibration()
        self.bf16 = bf16
        self._model = None
        self._tokenizer = tokenizer  # a loaded tokenizer to reuse (it takes a second to load)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer
            from transformers.utils import logging as hf_logging

            if self.threads:
                torch.set_num_threads(self.threads)
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(self.model_name)
            model = AutoModelForQuestionAnswering.from_pretrained(self.model_name, dtype="auto")
            compute_in_fp32(model)
            model.eval().to(self.device)
            if self.device == "cpu" and self.bf16 and not cpu_has_fast_bf16():
                self.bf16 = False
            self._tokenizer = tokenizer
            self._model = model

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def tokenizer(self):
        self.warm_up()
        return self._tokenizer

    def logits(self, windows: list[Window]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Start and end logits for each window, batched."""
        import torch

        self.warm_up()
        pad = self._tokenizer.pad_token_id
        results = []
        for begin in range(0, len(windows), self.batch_size):
            batch = windows[begin : begin + self.batch_size]
            ids, mask = (torch.from_numpy(a).to(self.device) for a in padded_batch([w.input_ids for w in batch], pad))
            with torch.inference_mode(), torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.bf16):
                output = self._model(input_ids=ids, attention_mask=mask)
            starts = output.start_logits.float().cpu().numpy()
            ends = output.end_logits.float().cpu().numpy()
            for row, window in enumerate(batch):
                n = len(window.input_ids)
                results.append((starts[row, :n], ends[row, :n]))
        return results

    def windows(self, question: str, passages: list[str]) -> list[Window]:
        """The model inputs for ``question`` on each passage."""
        with tokenizer_lock(self.tokenizer):
            return make_windows(
                self.tokenizer, [question] * len(passages), passages,
                self.max_length, self.stride, self.max_question_tokens,
            )

    def run(
        self, question: str, passages: list[str], top_k: int = 5, passage_priors: list[float] | None = None
    ) -> list[Span]:
        """Best answer spans across ``passages``, best first. The same span
        seen in two overlapping windows is kept once, with its best margin.

        A reader trained on single paragraphs scores each passage on its own
        scale, so ``passage_priors`` (evidence from retrieval, in margin units)
        are added when spans of different passages are ranked against each other.
        """
        if not passages:
            return []
        priors = [0.0] * len(passages) if passage_priors is None else passage_priors
        if len(priors) != len(passages):
            raise ValueError("passage_priors needs one value per passage")
        windows = self.windows(question, passages)
        spans: dict[tuple[int, int, int], Span] = {}
        for window, (start_logits, end_logits) in zip(windows, self.logits(windows)):
            text = passages[window.example_index]
            for margin, start_token, end_token in window_spans(
                start_logits, end_logits, window, self.max_answer_tokens, top_k
            ):
                start, end = trim_span(text, int(window.offsets[start_token, 0]), int(window.offsets[end_token, 1]))
                key = (window.example_index, start, end)
                if start < end and (key not in spans or spans[key].margin < margin):
                    spans[key] = Span(window.example_index, start, end, text[start:end], margin,
                                      self.calibration.confidence(margin), margin + priors[window.example_index])
        return sorted(spans.values(), key=lambda s: s.score, reverse=True)[:top_k]
