"""Verifier: a second reading of the reader's best spans, so that a span the
document does not support is refused rather than answered with confidence."""
from __future__ import annotations

import functools
import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

from rag.reader.reader import Span
from rag.settings import Settings
from rag.verifier.confidence import CombinedConfidence
from rag.verifier.verifier import Verifier

BUILTIN_VERIFIER = resources.files("rag.models").joinpath("verifier")


def builtin_verifier_path(cache_dir: Path, embedder_cache_dir: Path, deep: bool = False) -> Path:
    """The built-in verifier, assembled in the cache from the packaged weights
    and the built-in embedder's word embeddings."""
    from rag.embedding.materialize import materialize_embedder
    from rag.reader.assemble import assemble_model

    embedder = materialize_embedder(embedder_cache_dir, deep=deep)
    return assemble_model(Path(str(BUILTIN_VERIFIER)), embedder, cache_dir, deep)


@functools.cache
def _builtin_card() -> dict:
    """verifier.json, read once: the refusal bar is asked for on every question."""
    return json.loads(BUILTIN_VERIFIER.joinpath("verifier.json").read_text())


def builtin_confidence() -> CombinedConfidence:
    """The combination of margin and verifier score fitted on held-out questions."""
    return CombinedConfidence(**_builtin_card()["confidence"])


def builtin_refusal_bar() -> float:
    """The confidence bar for the combined confidence: the highest that keeps held-out
    answerable F1 at both floors (``python -m rag.evaluation.verifier --write``)."""
    return float(_builtin_card()["min_confidence"])


def builtin_verified_spans() -> int:
    """How many of the reader's best spans the held-out evaluation chose to read again:
    the combination and the bar were fitted for that number."""
    return int(_builtin_card()["verified_spans"])


def builtin_alternates_below() -> float:
    """The reader's other best spans are read again only when its best span's combined confidence
    is under this (chosen on held-out questions with the combination): a confident best span is
    rarely overtaken, and one reading instead of three is most of what the verifier adds to an answer."""
    below = _builtin_card()["alternates_below"]
    return float("inf") if below is None else float(below)


def builtin_sentences_before() -> int:
    """How many sentences before the span's the built-in verifier was trained to read."""
    return int(_builtin_card()["recipe"].get("sentences_before", 0))


def make_onnx_verifier(settings: Settings, exports: Path, tokenizer, word_embeddings) -> Verifier:
    """The built-in verifier on the settings' ONNX engine, sharing the embedder's tokenizer and table."""
    from rag.verifier.onnx_verifier import OnnxVerifier

    return OnnxVerifier(exports, tokenizer, word_embeddings, settings.reader_threads or None, settings.engine,
                        settings.precision, settings.compiled_cache_dir, builtin_sentences_before(),
                        settings.verifier_int8)


def make_verifier(settings: Settings, tokenizer=None) -> Verifier:
    """The built-in verifier through transformers (the torch path)."""
    path = builtin_verifier_path(settings.verifier_cache_dir, settings.embedder_cache_dir)
    return Verifier(str(path), tokenizer=tokenizer, threads=settings.reader_threads or None,
                    sentences_before=builtin_sentences_before())


def verified(spans: list[Span], logits: list[float], confidence: CombinedConfidence) -> list[Span]:
    """The spans with the combined confidence, most confident first."""
    if len(spans) != len(logits):
        raise ValueError("one verifier score per span is needed")
    rescored = [replace(span, confidence=confidence.confidence(span.margin, logit))
                for span, logit in zip(spans, logits)]
    return sorted(rescored, key=lambda span: span.confidence, reverse=True)


def read_again(verifier: Verifier, confidence: CombinedConfidence, question: str, spans: list[Span],
               passages: list[str], alternates_below: float = float("inf")) -> list[Span]:
    """The reader's best spans read again, most confident first: the best one alone, then the
    others only when its combined confidence is under ``alternates_below`` (those read only);
    with no early stop (``inf``) all of them in one call."""
    def rescored(chosen: list[Span]) -> list[Span]:
        logits = verifier.run(question, [(passages[s.passage_index], s.start, s.end) for s in chosen])
        return verified(chosen, logits, confidence)

    if not spans:
        return []
    if alternates_below == float("inf"):
        return rescored(spans)
    best = rescored(spans[:1])
    if len(spans) == 1 or best[0].confidence >= alternates_below:
        return best
    return sorted(best + rescored(spans[1:]), key=lambda span: span.confidence, reverse=True)


__all__ = ["CombinedConfidence", "Verifier", "builtin_alternates_below", "builtin_confidence", "builtin_refusal_bar",
           "builtin_verified_spans", "builtin_verifier_path", "make_onnx_verifier", "make_verifier", "read_again",
           "verified"]
