"""What the verifier reads: the question, and the candidate span marked in
the sentence around it (``… left [[ span ]] right …``). Shared by training
and answering, so both see exactly the same inputs."""
from __future__ import annotations

import re

OPEN, CLOSE = "[[", "]]"
# Each side of the span keeps at most this many characters of its sentence,
# so question and context fit a short input (cheap to train and to run).
SIDE_CHARS = 240
MAX_TOKENS = 192
MAX_QUESTION_TOKENS = 64
SENTENCE_END = re.compile(r"[.!?…](?=\s)|\n")


def marked_context(text: str, start: int, end: int, side_chars: int = SIDE_CHARS, sentences_before: int = 0) -> str:
    """The sentence holding ``text[start:end]`` (and the ``sentences_before``
    before it, which may name what the span's sentence only refers to), with
    the span between the markers; each side cut at ``side_chars`` a sentence
    (on a word boundary)."""
    if not 0 <= start < end <= len(text):
        raise ValueError(f"span {start}-{end} is not inside a text of {len(text)} characters")
    reach = side_chars * (1 + sentences_before)
    left = text[max(0, start - reach):start]
    ends = list(SENTENCE_END.finditer(left))
    if len(ends) > sentences_before:
        left = left[ends[-1 - sentences_before].end():]
    elif start > reach:
        left = left.split(" ", 1)[-1]
    right = text[end:end + side_chars]
    first = SENTENCE_END.search(right)
    if first:
        right = right[:first.end()]
    elif end + side_chars < len(text):
        right = right.rsplit(" ", 1)[0]
    return f"{' '.join(left.split())} {OPEN} {text[start:end]} {CLOSE} {' '.join(right.split())}".strip()


def encode(tokenizer, question: str, contexts: list[str]) -> list[list[int]]:
    """Token ids of ``<s> question </s></s> marked context </s>`` per context:
    the question cut at ``MAX_QUESTION_TOKENS``, the context's end cut past
    ``MAX_TOKENS``. The caller holds the tokenizer's lock (its truncation is changed)."""
    from rag.reader.windows import backend

    rust = backend(tokenizer)
    rust.no_padding()
    rust.no_truncation()
    ids = rust.encode(question, add_special_tokens=False).ids
    if len(ids) > MAX_QUESTION_TOKENS:
        question = rust.decode(ids[:MAX_QUESTION_TOKENS], skip_special_tokens=False)
    rust.enable_truncation(MAX_TOKENS, strategy="only_second")
    try:
        return [e.ids for e in rust.encode_batch([(question, c) for c in contexts])]
    finally:
        rust.no_truncation()
