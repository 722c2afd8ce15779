"""SQuAD-format data and the SQuAD answer metrics (EM/F1), extended for French.

The normalization is SQuAD's (lower case, no punctuation, no articles, single
spaces) with French articles and elisions (l', d', qu', …) and typographic
quotes added, so "l’accord" and "accord" compare equal as they would in English.
"""
from __future__ import annotations

import collections
import gzip
import json
import re
import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class QAExample:
    """One question on one context; ``answers`` are (text, char start) pairs."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)
    title: str = ""
    article_index: int = 0

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_squad(path: str | Path) -> list[QAExample]:
    """Read a SQuAD v1.1/v2.0 JSON file (plain or .gz); each paragraph is a context."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        articles = json.load(handle)["data"]
    examples = []
    for article_index, article in enumerate(articles):
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else [
                    (a["text"], int(a["answer_start"])) for a in qa.get("answers", [])
                ]
                examples.append(QAExample(
                    id=str(qa["id"]), question=qa["question"], context=context, answers=answers,
                    title=article.get("title", ""), article_index=article_index,
                ))
    return examples


_ARTICLES = re.compile(
    r"\b(a|an|the|le|la|les|un|une|des|du|de|d|l|qu|au|aux)\b", re.IGNORECASE
)
_PUNCTUATION = set(string.punctuation) | {"«", "»", "’", "‘", "“", "”", "…", "–", "—"}


def normalize_answer(text: str) -> str:
    """SQuAD normalization plus French articles, elisions and typographic punctuation."""
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_scores(prediction: str, truths: list[str]) -> tuple[float, float]:
    """(EM, F1) against the best-matching reference; an empty list means "no answer"."""
    if not truths:
        score = float(prediction == "")
        return score, score
    if prediction == "":
        return 0.0, 0.0
    return max(exact_match(prediction, t) for t in truths), max(f1_score(prediction, t) for t in truths)
