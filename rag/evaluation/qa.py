"""End-to-end evaluation on a JSONL question set (the ``dev_qa.jsonl`` format:
``id``, ``lang``, ``question``, ``answers``, ``answerable``, and optionally
``history``, the earlier questions of a conversation, and ``standalone``, the
same question with what it refers to spelled out, asked without history so
that the report can tell follow-up handling errors from reader errors)."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from rag.answer import Pipeline
from rag.evaluation.reader import percentiles_ms
from rag.evaluation.squad import best_scores, normalize_answer

BUILTIN_SETS = ("extra_qa.jsonl", "followups.jsonl")


@dataclass
class QAItem:
    id: str
    lang: str
    question: str
    answers: list[str]
    answerable: bool
    history: list[str] = field(default_factory=list)
    standalone: str | None = None


def load_questions(path: str | Path) -> list[QAItem]:
    """Questions from a JSONL file, or from a set shipped with the package by name."""
    if not Path(path).exists() and str(path) in BUILTIN_SETS:
        text = resources.files("rag.evaluation.sets").joinpath(str(path)).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                items.append(QAItem(
                    id=record["id"], lang=record.get("lang", "?"), question=record["question"],
                    answers=list(record.get("answers", [])), answerable=bool(record.get("answerable", True)),
                    history=list(record.get("history", [])), standalone=record.get("standalone"),
                ))
            except (ValueError, KeyError) as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
    return items


def evaluate(pipeline: Pipeline, items: list[QAItem]) -> dict:
    """EM/F1 per language on answerable questions (an abstention scores 0),
    abstentions on unanswerable ones, recall@k of the retrieved passages
    (a gold answer inside one of them), latency, and for follow-ups with a
    ``standalone`` rewrite, the F1 of that rewrite asked on its own."""
    pipeline.warm_up()
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    rows = []
    for item in items:
        began = time.perf_counter()
        answer = pipeline.run(item.question, item.history)
        seconds = time.perf_counter() - began
        em, f1 = best_scores(answer.text, item.answers if item.answerable else [])
        retrieved = " ".join(normalize_answer(s.text) for s in answer.sources)
        recall = any(normalize_answer(a) in retrieved for a in item.answers) if item.answerable else None
        standalone_f1 = None
        if item.standalone and item.answerable:
            standalone_f1 = best_scores(pipeline.run(item.standalone).text, item.answers)[1]
        for group in (item.lang, "all"):
            metrics = groups[group]
            metrics["seconds"].append(seconds)
            if standalone_f1 is not None:
                metrics["standalone_f1"].append(standalone_f1)
            if item.answerable:
                metrics["em"].append(em)
                metrics["f1"].append(f1)
                metrics["recall"].append(recall)
            else:
                metrics["abstained"].append(not answer.answered)
        rows.append({"id": item.id, "question": item.question, "answer": answer.text, "score": answer.score,
                     "gold": item.answers, "f1": f1, "recall": recall, "standalone_f1": standalone_f1})
    summary = {}
    for group, metrics in groups.items():
        summary[group] = {
            "answerable": len(metrics["f1"]),
            "em": _mean(metrics["em"]),
            "f1": _mean(metrics["f1"]),
            f"recall@{pipeline.settings.top_k}": _mean(metrics["recall"]),
            "unanswerable": len(metrics["abstained"]),
            "abstained": int(sum(metrics["abstained"])),
            "standalone_f1": _mean(metrics["standalone_f1"]),
            **percentiles_ms(metrics["seconds"], "latency", digits=None),
        }
    return {"summary": summary, "questions": rows}


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def format_report(report: dict) -> str:
    lines = []
    for group, m in sorted(report["summary"].items(), key=lambda kv: kv[0] == "all"):
        recall_key = next(k for k in m if k.startswith("recall@"))
        parts = [f"{group:>4}"]
        if m["answerable"]:
            parts.append(f"EM {m['em']:.3f}  F1 {m['f1']:.3f}  {recall_key} {m[recall_key]:.3f}  (n={m['answerable']})")
        if m["standalone_f1"] is not None:
            parts.append(f"standalone F1 {m['standalone_f1']:.3f}")
        if m["unanswerable"]:
            parts.append(f"abstained {m['abstained']}/{m['unanswerable']}")
        parts.append(f"latency p50 {m['latency_ms_p50']:.0f} ms p95 {m['latency_ms_p95']:.0f} ms")
        lines.append("  ".join(parts))
    return "\n".join(lines)
