"""The verifier on held-out questions, and the fit of the answer's confidence.

    python -m rag.evaluation.verifier runs/verifier                     # score the run's export
    python -m rag.evaluation.verifier runs/verifier --write rag/models/verifier
    python -m rag.evaluation.verifier runs/verifier --verifier rag/models/verifier --lean   # as answering reads

The reader's best spans on each held-out question (saved by the training run)
are read again by the verifier; the margin and the verifier's logit are
combined by a logistic model that ranks the spans, and a second one that
calibrates the chosen span's confidence. Every figure is out of fold (five
folds by question), so no question is scored by a model fitted on it; the
models written with ``--write`` are fitted on all of them. One row per number
of spans verified, against the reader's margin alone, then, for the fewest spans
within a point of the best, one row per confidence of the best span under which
the others are read (answering reads them only then: ``--write`` records the
lowest within a point of always reading them). The diagnostic sets
(PIAF's questions on their paragraph without their answer's sentences, and
SQuAD v2.0's English questions on the Spanish translation of their paragraph)
are scored by the combination fitted on all the others, and only their figures
at the bar are reported (refusals; where a set has answerable questions, their
F1, the AUC and the refusals at SQuAD v2.0's F1 floor); a set the run's
``candidates.jsonl`` lacks is read by the reader first.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
from pathlib import Path

import numpy as np

from rag.evaluation.squad import QAExample, best_scores
from rag.training.verifier import DIAGNOSTIC_SETS, auc, is_right, load_candidates, reader_candidates

log = logging.getLogger("rag.evaluation.verifier")

BARS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
FOLDS = 5
SPAN_COUNTS = (1, 2, 3, 5)  # the numbers of the reader's best spans the verifier may read again
# The confidences of the best span under which the verifier reads the others (inf: always).
ALTERNATES_BELOW = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, float("inf"))
# The answerable F1 the refusal bar must keep (issue 19): SQuAD v2.0's 0.75, and on
# PIAF no more than 2 points under the reader's 0.597 at its shipped bar.
SQUAD_FLOOR, PIAF_FLOOR = 0.75, 0.577


def fit_logistic(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Weights (last: bias) of a logistic fit by Newton's method, lightly regularized;
    a feature whose weight comes out negative is dropped (weight 0) and the rest refitted."""
    keep = np.ones(features.shape[1], dtype=bool)
    while True:
        x = np.column_stack([features[:, keep], np.ones(len(features))])
        theta = np.zeros(x.shape[1])
        for _ in range(50):
            p = 1 / (1 + np.exp(-np.clip(x @ theta, -60, 60)))
            gradient = x.T @ (p - labels) / len(x) + 1e-4 * theta
            hessian = (x * (p * (1 - p))[:, None]).T @ x / len(x) + 1e-4 * np.eye(x.shape[1])
            theta -= np.linalg.solve(hessian, gradient)
        weights = np.zeros(features.shape[1])
        weights[keep] = theta[:-1]
        if (weights >= 0).all():
            return np.append(weights, theta[-1])
        keep &= weights > 0


class Question:
    """A held-out question with its candidate spans' texts, margins, verifier logits and labels."""

    def __init__(self, group: str, example: QAExample, spans: list[tuple[int, int, float]], logits: list[float]):
        self.group, self.example = group, example
        self.texts = [example.context[start:end] for start, end, _ in spans]
        self.margins = np.array([margin for _, _, margin in spans], dtype=np.float64)
        self.logits = np.array(logits, dtype=np.float64)
        self.right = np.array([is_right(text, example) for text in self.texts], dtype=np.float64)


def fit_confidence(questions: list[Question], spans: int) -> np.ndarray:
    """(margin weight, verifier weight, bias): the ranking fit on every span,
    then the chosen span's confidence recalibrated (a positive scale of the same logit)."""
    features = np.concatenate([np.column_stack([q.margins[:spans], q.logits[:spans]]) for q in questions])
    labels = np.concatenate([q.right[:spans] for q in questions])
    ranking = fit_logistic(features, labels)
    chosen = [int(np.argmax(np.column_stack([q.margins[:spans], q.logits[:spans]]) @ ranking[:2]))
              for q in questions]
    values = np.array([[np.dot(ranking[:2], (q.margins[i], q.logits[i]))] for q, i in zip(questions, chosen)])
    # the calibration's own bias replaces the ranking's: ``values`` leave the ranking's bias out
    scale = fit_logistic(values, np.array([q.right[i] for q, i in zip(questions, chosen)]))
    return np.array([scale[0] * ranking[0], scale[0] * ranking[1], scale[1]])


def decide(question: Question, weights: np.ndarray | None, spans: int, reader_calibration,
           alternates_below: float = float("inf")) -> tuple[str, float, bool, int]:
    """(answer span, its confidence, whether it is right, spans the verifier read) with ``weights``,
    or the reader alone when None; the spans after the best are read as answering reads them
    (``rag.verifier.read_again``): only when the best one's confidence is under ``alternates_below``."""
    if not len(question.texts):
        return "", 0.0, False, 0
    if weights is None:
        return question.texts[0], reader_calibration.confidence(question.margins[0]), bool(question.right[0]), 0
    values = weights[0] * question.margins[:spans] + weights[1] * question.logits[:spans] + weights[2]
    read = 1 if 1 / (1 + np.exp(-values[0])) >= alternates_below else len(values)
    best = int(np.argmax(values[:read]))
    return question.texts[best], float(1 / (1 + np.exp(-values[best]))), bool(question.right[best]), read


def out_of_fold(questions: list[Question], spans: int | None, reader_calibration,
                alternates_below: float = float("inf")) -> list[tuple[str, float, bool, int]]:
    """Each question's decision by a combination fitted on the other folds (the reader alone when ``spans`` is None)."""
    if spans is None:
        return [decide(q, None, 1, reader_calibration) for q in questions]
    order = list(range(len(questions)))
    random.Random(7).shuffle(order)
    decisions: list = [None] * len(questions)
    for fold in range(FOLDS):
        test = set(order[fold::FOLDS])
        weights = fit_confidence([q for i, q in enumerate(questions) if i not in test and len(q.texts)], spans)
        for i in test:
            decisions[i] = decide(questions[i], weights, spans, reader_calibration, alternates_below)
    return decisions


def trade_off(questions: list[Question], decisions, bar: float) -> tuple[float | None, float | None]:
    """(share of unanswerable questions refused, F1 on answerable ones) at a confidence bar."""
    refused, f1 = [], []
    for q, (text, confidence, *_) in zip(questions, decisions):
        if q.example.answerable:
            f1.append(best_scores(text if confidence >= bar else "", [t for t, _ in q.example.answers])[1])
        else:
            refused.append(confidence < bar)
    return (round(float(np.mean(refused)), 3) if refused else None, round(float(np.mean(f1)), 3) if f1 else None)


def highest_bar(questions: list[Question], decisions, floor: float) -> float:
    """The highest confidence bar (in steps of 0.005) that keeps answerable F1 at ``floor`` or more;
    refusal only grows with the bar."""
    bars = [float(bar) for bar in np.linspace(0, 1, 201)
            if (trade_off(questions, decisions, float(bar))[1] or 0.0) >= floor]
    return round(max(bars, default=0.0), 3)


def reliability(decisions, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of the chosen spans' confidence, and the table behind it."""
    confidence = np.array([d[1] for d in decisions])
    right = np.array([d[2] for d in decisions], dtype=np.float64)
    rows, error = [], 0.0
    for low in np.arange(0, 1, 1 / bins):
        inside = (confidence >= low) & (confidence < low + 1 / bins + (1e-9 if low + 1 / bins >= 1 else 0))
        if inside.any():
            rows.append({"confidence": f"{low:.1f}-{low + 1 / bins:.1f}", "questions": int(inside.sum()),
                         "mean_confidence": round(float(confidence[inside].mean()), 3),
                         "right": round(float(right[inside].mean()), 3)})
            error += inside.sum() / len(confidence) * abs(confidence[inside].mean() - right[inside].mean())
    return round(float(error), 4), rows


def row(questions: list[Question], decisions, bar: float | None = None,
        diagnostic: tuple[list[Question], list[tuple[str, float, bool, int]]] | None = None) -> dict:
    """One run's held-out figures; the "at the bar" ones at ``bar``, by default the highest that keeps both floors.
    ``diagnostic``: (questions, decisions) of the diagnostic sets, whose refusals at the bar are reported."""
    by_group: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_group.setdefault(q.group, []).append(i)

    def part(*groups):
        chosen = [i for g in groups for i in by_group.get(g, [])]
        return [questions[i] for i in chosen], [decisions[i] for i in chosen]

    def group_auc(chosen) -> float:
        return round(auc(np.array([d[1] for d in chosen]), np.array([d[2] for d in chosen])), 4)

    squad, swap = part("squad-en-v2"), part("piaf", "piaf-swap-negatives")
    # each floor's highest bar: the most refused while answerable F1 keeps the floor (refusal grows with the bar)
    squad_bar, swap_bar = highest_bar(*squad, SQUAD_FLOOR), highest_bar(*swap, PIAF_FLOOR)
    result = {
        "squad_v2_auc": group_auc(squad[1]),
        f"squad_v2_refused_at_f1_{SQUAD_FLOOR}": trade_off(*squad, squad_bar)[0] or 0.0,
        "squad_v2_refused/f1": {bar: trade_off(*squad, bar) for bar in BARS},
        f"piaf_swap_refused_at_f1_{PIAF_FLOOR}": trade_off(*swap, swap_bar)[0] or 0.0,
        "piaf_swap_refused/f1": {bar: trade_off(*swap, bar) for bar in BARS},
        # the highest bar that keeps both floors: the pipeline's refusal bar unless one is given
        "floors_bar": min(squad_bar, swap_bar),
    }
    result["bar"] = result["floors_bar"] if bar is None else bar
    for name, groups in (("piaf_swap", ("piaf", "piaf-swap-negatives")),
                         ("piaf_same_article", ("piaf", "piaf-same-article-negatives")),
                         ("piaf_other_article", ("piaf", "piaf-negatives")),
                         ("xquad_en_same_article", ("xquad-en", "xquad-en-same-article-negatives"))):
        result[f"{name}_refused/f1_at_bar"] = trade_off(*part(*groups), result["bar"])
    result["piaf_swap_auc"] = group_auc(swap[1])
    refused_squad, f1_squad = trade_off(*squad, result["bar"])
    refused_swap, f1_piaf = trade_off(*swap, result["bar"])
    result["at_bar"] = {"squad_v2_refused": refused_squad, "squad_v2_f1": f1_squad, "piaf_swap_refused": refused_swap,
                        "piaf_f1": f1_piaf}
    result["ece"], result["reliability"] = reliability(decisions)
    read = np.array([d[3] for d in decisions if d[3]])
    if len(read):  # the verifier's readings per question, and the share that took one
        result["spans_read"] = {"mean": round(float(read.mean()), 2), "one": round(float((read == 1).mean()), 3)}
    for name in DIAGNOSTIC_SETS if diagnostic else ():
        chosen = [(q, d) for q, d in zip(*diagnostic) if q.group == name]
        if not chosen:
            continue
        set_questions, set_decisions = [q for q, _ in chosen], [d for _, d in chosen]
        refused, f1 = trade_off(set_questions, set_decisions, result["bar"])
        result[f"{name}_refused_at_bar"] = refused
        if f1 is not None:  # a set with answerable questions: their F1 at the bar, right against wrong,
            result[f"{name}_f1_at_bar"] = f1  # and its own curve at SQuAD v2.0's floor
            result[f"{name}_auc"] = group_auc(set_decisions)
            own_bar = highest_bar(set_questions, set_decisions, SQUAD_FLOOR)
            result[f"{name}_refused_at_f1_{SQUAD_FLOOR}"] = trade_off(set_questions, set_decisions, own_bar)[0] or 0.0
    return result


def row_name(spans: int, alternates_below: float = float("inf")) -> str:
    """The table's row for ``spans`` spans verified, the others read only under ``alternates_below``."""
    name = f"margin + verifier, {spans} span(s) verified"
    return name if alternates_below == float("inf") else f"{name}, the others under {alternates_below:g}"


def lean_verifier(trained: Path, settings):
    """The built-in verifier's export on the settings' engine; only the built-in one is exported."""
    from rag.embedding.materialize import sha256_file
    from rag.embedding.onnx_embedder import load_tokenizer
    from rag.embedding.onnx_export import WORD_EMBEDDINGS
    from rag.reader import builtin_exports
    from rag.verifier import BUILTIN_VERIFIER, make_onnx_verifier

    weights = "model.safetensors"
    if sha256_file(trained / weights) != sha256_file(Path(str(BUILTIN_VERIFIER.joinpath(weights)))):
        raise SystemExit(f"--lean reads the built-in verifier's export; {trained} is another verifier")
    exports = builtin_exports(settings)
    return make_onnx_verifier(settings, exports, load_tokenizer(settings.embedder_cache_dir),
                              np.load(exports / WORD_EMBEDDINGS, mmap_mode="r"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the training run's folder (its candidates.jsonl)")
    parser.add_argument("--verifier", type=Path, help="an exported verifier (default: the run's final/)")
    parser.add_argument("--data-dir", default=os.environ.get("RAG_DATASETS", "../shared/datasets"))
    parser.add_argument("--seed", type=int, default=13, help="the training run's seed (the same held-out sets)")
    parser.add_argument("--lean", action="store_true",
                        help="read with the built-in verifier's export on this CPU's engine, as answering does "
                        "(RAG_RUNTIME, RAG_PRECISION, RAG_VERIFIER_INT8), instead of the trained weights in torch")
    parser.add_argument("--write", type=Path, metavar="FOLDER",
                        help="record the chosen combination and the figures in FOLDER/verifier.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from rag.embedding.materialize import sha256_file
    from rag.reader import builtin_reader_calibration
    from rag.reader.assemble import assemble_model
    from rag.settings import READER_MIN_CONFIDENCE, Settings
    from rag.training.data import load_mix
    from rag.training.verifier import held_out_sets
    from rag.verifier import Verifier

    trained = args.verifier or args.run / "final"
    settings = Settings.from_env()
    card = json.loads((trained / "verifier.json").read_text())
    recipe = card.get("recipe", {})
    _, evaluation = load_mix(args.data_dir, args.seed, 1, recipe.get("same_article_negatives", 0.3), True,
                             recipe.get("swap_negatives", 0.5))
    held = held_out_sets(evaluation, args.seed, args.data_dir)
    candidates_file = args.run / "candidates.jsonl"
    candidates = load_candidates(candidates_file)
    unread = [name for name, examples in held.items() if any((name, e.id) not in candidates for e in examples)]
    if unread:  # a set added after the run was trained: the reader reads it as the training run would have
        from rag.reader import builtin_exports, make_onnx_reader

        reader = make_onnx_reader(settings, builtin_exports(settings))
        for name in unread:
            reader_candidates(reader, held[name], candidates_file, recipe.get("held_out_spans", 5), name)
        candidates = load_candidates(candidates_file)
    verifier = lean_verifier(trained, settings) if args.lean else None
    reading = f"-{verifier.reading}" if verifier else ""  # logits cached per reading: engine, precision, int8
    scores_file = args.run / f"held-out-logits-{sha256_file(trained / 'model.safetensors')[:12]}{reading}.json"
    logits = json.loads(scores_file.read_text()) if scores_file.exists() else {}
    unscored = [(name, e) for name, examples in held.items() for e in examples if f"{name}/{e.id}" not in logits]
    if unscored:
        if verifier is None:
            verifier = Verifier(str(assemble_model(trained, settings.embedder_cache_dir, args.run / "assembled")),
                                sentences_before=recipe.get("sentences_before", 0))
        for name, e in unscored:
            logits[f"{name}/{e.id}"] = verifier.run(e.question, [(e.context, s, t) for s, t, _ in
                                                                 candidates.get((name, e.id), [])])
        scores_file.write_text(json.dumps(logits))
    every = {name: [Question(name, e, candidates.get((name, e.id), []), logits[f"{name}/{e.id}"]) for e in examples]
             for name, examples in held.items()}
    questions = [q for name in held if name not in DIAGNOSTIC_SETS for q in every[name]]
    diagnostic = [q for name in DIAGNOSTIC_SETS for q in every[name]]
    calibration = builtin_reader_calibration()
    # the combination fitted on every question: what --write records, and what scores the diagnostic sets
    fitted = {spans: fit_confidence([q for q in questions if len(q.texts)], spans) for spans in SPAN_COUNTS}
    # the reader alone at the bar it ships with, the verifier's runs at the highest that keeps both floors
    table = {"reader margin alone": row(questions, out_of_fold(questions, None, calibration), READER_MIN_CONFIDENCE,
                                        (diagnostic, [decide(q, None, 1, calibration) for q in diagnostic]))}
    for spans in SPAN_COUNTS:
        table[row_name(spans)] = row(questions, out_of_fold(questions, spans, calibration), None,
                                     (diagnostic, [decide(q, fitted[spans], spans, calibration) for q in diagnostic]))

    def merit(name: str) -> float:
        figures = table[name]["at_bar"]
        return figures["squad_v2_refused"] + figures["piaf_swap_refused"]

    # the fewest spans (each costs a verifier reading) within a point of the best
    best = max(merit(row_name(spans)) for spans in SPAN_COUNTS)
    spans = min(spans for spans in SPAN_COUNTS if merit(row_name(spans)) >= best - 0.01)
    for below in ALTERNATES_BELOW[:-1] if spans > 1 else ():
        table[row_name(spans, below)] = row(
            questions, out_of_fold(questions, spans, calibration, below), None,
            (diagnostic, [decide(q, fitted[spans], spans, calibration, below) for q in diagnostic]))
    # then the lowest confidence under which the others are read, within a point of always reading them
    below = min(b for b in ALTERNATES_BELOW if row_name(spans, b) in table
                and merit(row_name(spans, b)) >= merit(row_name(spans)) - 0.01)
    print(json.dumps(table, indent=1))
    if args.write:
        weights = fitted[spans]
        card["confidence"] = {"margin_weight": round(float(weights[0]), 6),
                              "verifier_weight": round(float(weights[1]), 6), "bias": round(float(weights[2]), 6)}
        card["verified_spans"] = spans
        card["alternates_below"] = None if below == float("inf") else below
        card["min_confidence"] = table[row_name(spans, below)]["bar"]
        card["held_out"] = table
        (args.write / "verifier.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
        log.info("wrote the combination for %d span(s) verified, the others under %s, to %s", spans, below,
                 args.write / "verifier.json")


if __name__ == "__main__":
    main()
