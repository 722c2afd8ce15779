"""Reader-only evaluation on SQuAD-format examples (each question read against
its own paragraph), and the calibration of the reader's confidence."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag.evaluation.squad import QAExample, best_scores, f1_score
from rag.reader.reader import Calibration, ExtractiveReader


@dataclass
class ReaderPrediction:
    example: QAExample
    text: str  # best span, before the no-answer decision
    margin: float
    seconds: float


def predict_all(reader: ExtractiveReader, examples: list[QAExample]) -> list[ReaderPrediction]:
    predictions = []
    for example in examples:
        began = time.perf_counter()
        spans = reader.run(example.question, [example.context], top_k=1)
        elapsed = time.perf_counter() - began
        best = spans[0] if spans else None
        predictions.append(ReaderPrediction(example, best.text if best else "", best.margin if best else -1e9, elapsed))
    return predictions


def score(predictions: list[ReaderPrediction], calibration: Calibration | None, min_confidence: float = 0.5) -> dict:
    """EM/F1 (fractions) and, where there are unanswerable questions, no-answer
    accuracy; with ``calibration`` None the reader always answers."""
    em, f1 = [], []
    for p in predictions:
        answers = calibration is None or calibration.confidence(p.margin) >= min_confidence
        e, f = best_scores(p.text if answers else "", [text for text, _ in p.example.answers])
        em.append(e)
        f1.append(f)
    result = {"n": len(predictions), "em": float(np.mean(em)) if em else 0.0, "f1": float(np.mean(f1)) if f1 else 0.0}
    unanswerable = [i for i, p in enumerate(predictions) if not p.example.answerable]
    answerable = [i for i, p in enumerate(predictions) if p.example.answerable]
    if unanswerable:
        result["no_answer_accuracy"] = float(np.mean([em[i] for i in unanswerable]))
        result["n_unanswerable"] = len(unanswerable)
    if answerable and unanswerable:
        result["has_answer_f1"] = float(np.mean([f1[i] for i in answerable]))
    result.update(span_lengths([p for p in predictions if p.example.answerable and p.text]))
    if predictions:
        result.update(percentiles_ms([p.seconds for p in predictions], "latency", digits=None))
    return result


def trade_off(predictions: list[ReaderPrediction], calibration: Calibration,
              thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) -> list[dict]:
    """Refusing against answering, one row per confidence bar (``--min-confidence``):
    the share of unanswerable questions refused and the F1 on answerable ones."""
    rows = []
    for bar in thresholds:
        scores = score(predictions, calibration, bar)
        rows.append({"min_confidence": bar, "unanswerable_refused": round(scores.get("no_answer_accuracy", 0.0), 4),
                     "answerable_f1": round(scores.get("has_answer_f1", scores["f1"]), 4),
                     "f1": round(scores["f1"], 4)})
    return rows


def span_lengths(predictions: list[ReaderPrediction]) -> dict[str, float]:
    """How long the reader's spans run against the gold answer closest in
    length, in words: the median ratio and the share at least twice as long."""
    if not predictions:
        return {}
    ratios = []
    for p in predictions:
        predicted = len(p.text.split())
        gold = min((len(text.split()) for text, _ in p.example.answers), key=lambda n: abs(n - predicted))
        ratios.append(predicted / max(1, gold))
    return {"span_length_ratio_median": float(np.median(ratios)),
            "spans_twice_too_long": float(np.mean(np.array(ratios) >= 2))}


def percentiles_ms(seconds: list[float], name: str, digits: int | None = 1) -> dict[str, float]:
    """``NAME_ms_p50`` and ``NAME_ms_p95`` of per-question times, in milliseconds to ``digits``
    decimals (``None``: unrounded, as the evaluations' JSON and the reader's card keep them)."""
    milliseconds = np.array(seconds) * 1000
    percentiles = {q: float(np.percentile(milliseconds, q)) for q in (50, 95)}
    return {f"{name}_ms_p{q}": value if digits is None else round(value, digits) for q, value in percentiles.items()}


def fit_calibration(predictions: list[ReaderPrediction]) -> Calibration:
    """Platt scaling: a logistic fit of "answering with this span is right"
    (F1 >= 0.5 on an answerable question; never right on an unanswerable
    one) on the margin. Answerable and unanswerable questions weigh the same."""
    margins = np.array([p.margin for p in predictions], dtype=np.float64)
    right = np.array([
        p.example.answerable and max(f1_score(p.text, t) for t, _ in p.example.answers) >= 0.5 for p in predictions
    ], dtype=np.float64)
    answerable = np.array([p.example.answerable for p in predictions])
    weights = np.where(answerable, 0.5 / max(1, answerable.sum()), 0.5 / max(1, (~answerable).sum()))
    features = np.stack([margins, np.ones_like(margins)], axis=1)
    theta = np.zeros(2)
    for _ in range(100):  # Newton's method on the weighted log-loss, lightly regularized
        probabilities = 1 / (1 + np.exp(-features @ theta))
        gradient = features.T @ (weights * (probabilities - right)) + 1e-4 * theta
        hessian = (features * (weights * probabilities * (1 - probabilities))[:, None]).T @ features + 1e-4 * np.eye(2)
        theta -= np.linalg.solve(hessian, gradient)
    slope, intercept = theta
    if slope <= 0:
        raise ValueError("the reader's margin does not separate right from wrong answers")
    return Calibration(offset=round(float(-intercept / slope), 4), scale=round(float(1 / slope), 4))
