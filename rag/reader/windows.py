"""Question + context windows, shared by training and inference so both see
exactly the same token layout: ``<s> question </s></s> context </s>``, long
contexts cut into overlapping windows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """One model input: token ids plus, for each token, its character span in
    the context (``(-1, -1)`` for question and special tokens)."""

    example_index: int
    input_ids: list[int]
    offsets: np.ndarray  # (n_tokens, 2) character offsets into the context, -1 outside it

    @property
    def context_mask(self) -> np.ndarray:
        return self.offsets[:, 0] >= 0


def backend(tokenizer):
    """The Rust tokenizer (``tokenizers.Tokenizer``) behind a transformers fast tokenizer, or itself."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def make_windows(
    tokenizer,
    questions: list[str],
    contexts: list[str],
    max_length: int,
    stride: int,
    max_question_tokens: int,
) -> list[Window]:
    """Tokenize question/context pairs into windows of at most ``max_length`` tokens.

    Questions longer than ``max_question_tokens`` are cut, so a context always
    has room; ``stride`` tokens overlap between consecutive windows. Works on
    the Rust tokenizer, so the query path needs no transformers import; a
    transformers fast tokenizer is accepted too. The caller holds the
    tokenizer's lock: its truncation setting is changed here.
    """
    rust = backend(tokenizer)
    rust.no_padding()
    rust.no_truncation()
    question_ids = [e.ids for e in rust.encode_batch(questions, add_special_tokens=False)]
    questions = [
        rust.decode(ids[:max_question_tokens], skip_special_tokens=False) if len(ids) > max_question_tokens else q
        for q, ids in zip(questions, question_ids)
    ]
    rust.enable_truncation(max_length, stride=stride, strategy="only_second")
    try:
        encodings = rust.encode_batch(list(zip(questions, contexts)))
    finally:
        rust.no_truncation()
    windows = []
    for example_index, encoding in enumerate(encodings):
        for part in (encoding, *encoding.overflowing):
            offsets = np.array(
                [pair if seq == 1 else (-1, -1) for pair, seq in zip(part.offsets, part.sequence_ids)],
                dtype=np.int64,
            ).reshape(-1, 2)
            windows.append(Window(example_index, part.ids, offsets))
    return windows


def span_labels(window: Window, answer_start: int, answer_end: int) -> tuple[int, int]:
    """Token (start, end) of a character span in this window; (0, 0) if it is not inside."""
    mask = window.context_mask
    starts, ends = window.offsets[:, 0], window.offsets[:, 1]
    inside = np.nonzero(mask)[0]
    if len(inside) == 0:
        return 0, 0
    first, last = inside[0], inside[-1]
    if starts[first] > answer_start or ends[last] < answer_end:
        return 0, 0
    after_start = inside[ends[inside] > answer_start]
    before_end = inside[starts[inside] < answer_end]
    if len(after_start) == 0 or len(before_end) == 0 or before_end[-1] < after_start[0]:
        return 0, 0
    return int(after_start[0]), int(before_end[-1])
