"""Reader-only evaluation on SQuAD-format examples (each question read against
its own paragraph), and the choice of the no-answer threshold."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag.reader.reader import ExtractiveReader
from rag.reader.squad import QAExample, best_scores


@dataclass
class ReaderPrediction:
    example: QAExample
    text: str  # best span, before the no-answer decision
    probability: float
    seconds: float


def predict_all(reader: ExtractiveReader, examples: list[QAExample]) -> list[ReaderPrediction]:
    predictions = []
    for example in examples:
        began = time.perf_counter()
        spans, _ = reader.run(example.question, [example.context], top_k=1)
        elapsed = time.perf_counter() - began
        best = spans[0] if spans else None
        predictions.append(ReaderPrediction(
            example, best.text if best else "", best.probability if best else 0.0, elapsed
        ))
    return predictions


def score(predictions: list[ReaderPrediction], threshold: float) -> dict:
    """EM/F1 (fractions), no-answer accuracy where there are unanswerable
    questions, and latency; a span below ``threshold`` counts as "no answer"."""
    em, f1 = [], []
    for p in predictions:
        answer = p.text if p.probability >= threshold else ""
        e, f = best_scores(answer, [text for text, _ in p.example.answers])
        em.append(e)
        f1.append(f)
    result = {
        "n": len(predictions),
        "em": float(np.mean(em)) if em else 0.0,
        "f1": float(np.mean(f1)) if f1 else 0.0,
        "threshold": threshold,
    }
    unanswerable = [i for i, p in enumerate(predictions) if not p.example.answerable]
    answerable = [i for i, p in enumerate(predictions) if p.example.answerable]
    if unanswerable:
        result["no_answer_accuracy"] = float(np.mean([em[i] for i in unanswerable]))
        result["n_unanswerable"] = len(unanswerable)
    if answerable and unanswerable:
        result["has_answer_f1"] = float(np.mean([f1[i] for i in answerable]))
    if predictions:
        seconds = np.array([p.seconds for p in predictions]) * 1000
        result["latency_ms_p50"] = float(np.percentile(seconds, 50))
        result["latency_ms_p95"] = float(np.percentile(seconds, 95))
    return result


def choose_threshold(answerable: list[ReaderPrediction], unanswerable: list[ReaderPrediction]) -> float:
    """The threshold that maximizes the mean of answerable F1 and abstention
    accuracy, weighting both kinds of question equally."""
    best_threshold, best_value = 0.0, -1.0
    for threshold in np.linspace(0.0, 0.95, 96):
        value = (score(answerable, threshold)["f1"] + score(unanswerable, threshold)["f1"]) / 2
        if value > best_value:
            best_threshold, best_value = float(threshold), value
    return round(best_threshold, 3)
