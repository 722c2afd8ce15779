"""Train the answerability verifier: a cross-encoder, started from the
built-in reader's encoder, that reads the question and a candidate span
marked in its sentence (:mod:`rag.verifier.inputs`) and scores "this span
answers the question".

    python -m rag.training.verifier --out runs/verifier     # again: resumes where it stopped
    python -m rag.training.verifier --out runs/epoch2 --continue-from rag/models/verifier --lr 2e-5

Each stage is kept in the run folder, so a stopped run resumes:
``candidates.jsonl`` (the reader's best spans on every training and held-out
question, on the lean path, as answering runs it), ``checkpoint.pt`` and
``train-log.jsonl`` (loss, and AUC on held-out SQuAD v2.0 questions, as
training goes), and ``final/``, the exported verifier. Then
``python -m rag.evaluation.verifier runs/verifier/final`` scores it on the
held-out sets and fits the answer's confidence.

Labels: a span is right when its F1 against a gold answer reaches 0.5 (with
``--soft-labels``, a reader's span is labelled with that F1); every span of an
unanswerable question is wrong. Positives are the gold spans and
the reader's right spans; negatives are the reader's spans on unanswerable
questions (SQuAD v2.0's adversarial ones, swapped-value, same-article and
other-article copies), its wrong spans on answerable ones and, with
``--other-answers``, another question's answer on the same paragraph and, with
``--part-answers``, too small a part of the question's own answer and, with
``--same-kind-values``, another value of its answer's kind in its paragraph and, with
``--answer-removed``, the reader's spans on a copy of the question whose
paragraph lost the sentences holding its answer. The held-out
articles of the reader's mix (:mod:`rag.training.data`) stay out.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np

from rag.embedding.batching import padded_batch
from rag.evaluation.squad import QAExample, f1_score, load_squad, normalize_answer
from rag.training.data import SQUAD_ES_V2, english_questions_on, french_and_english, load_mix
from rag.training.negatives import answer_removed, load_entity_finder, swap_negatives, value_spans
from rag.training.train import (FROZEN, batches, export_trained, optimizer_and_schedule, resume,
                                save_checkpoint)
from rag.verifier.inputs import encode, marked_context

log = logging.getLogger("rag.train.verifier")

HELD_OUT_SETS = ("squad-en-v2", "piaf", "piaf-swap-negatives", "piaf-same-article-negatives", "piaf-negatives",
                 "xquad-en", "xquad-en-same-article-negatives", "xquad-en-negatives")
# Scored with the combination fitted on the sets above, never fitted on: the
# held-out figures of runs measured before them stay as they were.
DIAGNOSTIC_SETS = ("piaf-answer-removed-negatives", "squad-v2-en-on-es")


def span_f1(text: str, example: QAExample) -> float:
    """The span's best F1 against the question's gold answers (0 when it has none)."""
    return max(f1_score(text, t) for t, _ in example.answers) if example.answerable else 0.0


RIGHT_F1 = 0.5  # the F1 from which a span counts as right (SQuAD's usual bar for a partial answer)


def is_right(text: str, example: QAExample) -> bool:
    """The label: the span's F1 against a gold answer is at least RIGHT_F1."""
    return span_f1(text, example) >= RIGHT_F1


def held_out_sets(evaluation: dict[str, list[QAExample]], seed: int,
                  data_dir: str | Path) -> dict[str, list[QAExample]]:
    """The held-out sets the verifier is chosen on, with PIAF's swapped-value negatives added,
    then the diagnostic ones: PIAF's questions on their paragraph without their answer's sentences,
    and SQuAD v2.0's English questions on the held-out Spanish translation of their paragraph."""
    sets = dict(evaluation)
    sets["piaf-swap-negatives"] = swap_negatives(evaluation["piaf"], load_entity_finder(), 1.0,
                                                 random.Random(seed + 4))
    sets["piaf-answer-removed-negatives"] = answer_removed(evaluation["piaf"], 1.0, random.Random(seed + 9))
    sets["squad-v2-en-on-es"] = english_questions_on(evaluation["squad-es-v2"], data_dir)
    return {name: sets[name] for name in (*HELD_OUT_SETS, *DIAGNOSTIC_SETS)}


def english_on_spanish(mix: list[QAExample], data_dir: str | Path, share: float,
                       rng: random.Random) -> list[QAExample]:
    """A ``share`` of the mix's SQuAD-es v2.0 questions asked in English (:func:`english_questions_on`):
    English questions on paragraphs in another language, v2.0's adversarial unanswerable ones among
    them, as a user asks of a French document in English. Only what the mix already trains on."""
    if not share:
        return []
    spanish = {(e.id, e.context) for e in load_squad(Path(data_dir) / SQUAD_ES_V2)}
    chosen = {e.id: e for e in mix if (e.id, e.context) in spanish}  # once each: SQuAD-es v1.1 repeats some
    return english_questions_on([e for e in chosen.values() if rng.random() < share], data_dir)


def reader_candidates(reader, examples: list[QAExample], path: Path, top_k: int, group: str) -> None:
    """Append the reader's ``top_k`` spans on each question's own paragraph to
    ``path`` (JSON lines), skipping questions already there."""
    done = set()
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            done = {(row["group"], row["id"]) for row in map(json.loads, lines)}
    todo = [e for e in examples if (group, e.id) not in done]
    began = time.time()
    with path.open("a", encoding="utf-8") as out:
        for count, example in enumerate(todo, 1):
            spans = reader.run(example.question, [example.context], top_k=top_k)
            out.write(json.dumps({"group": group, "id": example.id,
                                  "spans": [[s.start, s.end, round(s.margin, 4)] for s in spans]}) + "\n")
            if count % 500 == 0:
                out.flush()
                log.info("%s: %d of %d questions read (%.0f s)", group, count, len(todo), time.time() - began)


def load_candidates(path: Path) -> dict[tuple[str, str], list[tuple[int, int, float]]]:
    with path.open(encoding="utf-8") as lines:
        return {(row["group"], row["id"]): [tuple(span) for span in row["spans"]] for row in map(json.loads, lines)}


def other_answers(examples: list[QAExample], share: float, rng: random.Random) -> dict[str, tuple[int, int]]:
    """For a ``share`` of the answerable questions, the gold span of another
    question on the same paragraph that does not answer this one (apart from
    its spans, F1 under 0.5 against each of its answers): an on-topic wrong
    span, often of another kind ("who" answered by a product's name), which
    the reader's own spans rarely show the verifier."""
    by_context: dict[str, list[QAExample]] = {}
    for example in examples:
        if example.answerable:
            by_context.setdefault(example.context, []).append(example)
    chosen = {}
    for example in examples:
        if not example.answerable or rng.random() >= share:
            continue
        own = [(start, start + len(text)) for text, start in example.answers]
        spans = sorted({(start, start + len(text)) for other in by_context[example.context] if other.id != example.id
                        for text, start in other.answers[:1]
                        if text and example.context[start:start + len(text)] == text})
        spans = [(start, end) for start, end in spans
                 if all(end <= a or start >= b for a, b in own) and not is_right(example.context[start:end], example)]
        if spans:
            chosen[example.id] = rng.choice(spans)
    return chosen


def part_answers(examples: list[QAExample], share: float, rng: random.Random) -> dict[str, tuple[int, int]]:
    """For a ``share`` of the answerable questions, a run of whole words inside
    the first gold answer that is too small a part of it to be right (F1 under
    0.5 against each answer): one name of a list of three, the title of a
    person without the name. The reader's own spans rarely cut an answer so
    short, so without them the verifier learns no reason to prefer the whole."""
    chosen = {}
    for example in examples:
        if not example.answerable or rng.random() >= share:
            continue
        text, start = example.answers[0]
        if not text or example.context[start:start + len(text)] != text:
            continue
        words = [(start + m.start(), start + m.end()) for m in re.finditer(r"[^\s,;:()]+", text)]
        parts = []
        for first, last in itertools.combinations_with_replacement(range(len(words)), 2):
            part = example.context[words[first][0]:words[last][1]]
            # a word of three letters or more: "by" or "in" alone teach nothing
            if ((first, last) != (0, len(words) - 1) and not is_right(part, example)
                    and any(len(word) > 2 for word in normalize_answer(part).split())):
                parts.append((words[first][0], words[last][1]))
        if parts:
            chosen[example.id] = rng.choice(parts)
    return chosen


def same_kind_values(examples: list[QAExample], finder, share: float, rng: random.Random) -> dict[str, tuple[int, int]]:
    """For a ``share`` of the answerable questions, a value of the answer's own
    kind elsewhere in its paragraph (another person, year, number): an
    on-topic wrong span whose type fits the question, as an amount does for a
    question on a revenue the document never gives. Kinds are spaCy's
    entities (``finder``, :func:`rag.training.negatives.load_entity_finder`),
    years and other numbers."""
    chosen_examples = [e for e in examples if e.answerable and rng.random() < share]
    if not chosen_examples:
        return {}
    contexts = list(dict.fromkeys(e.context for e in chosen_examples))
    values = {context: value_spans(context, [(entity.start_char, entity.end_char, entity.label_)
                                             for entity in document.ents])
              for context, document in zip(contexts, finder.pipe(contexts, batch_size=32))}
    chosen = {}
    for example in chosen_examples:
        text, start = example.answers[0]
        if not text or example.context[start:start + len(text)] != text:
            continue
        own = [(begin, begin + len(answer)) for answer, begin in example.answers]
        kinds = {kind for kind, begin, end in values[example.context] if begin < start + len(text) and end > start}
        spans = [(begin, end) for kind, begin, end in values[example.context]
                 if kind in kinds and all(end <= a or begin >= b for a, b in own)
                 and not named_by(example.context[begin:end], [example.question, *(a for a, _ in example.answers)])
                 and not is_right(example.context[begin:end], example)]
        if spans:
            chosen[example.id] = rng.choice(spans)
    return chosen


def named_by(value: str, texts: list[str]) -> bool:
    """The value's words appear in one of the texts: the question's own subject
    ("la déportation des Acadiens") or the answer's result ("216" of "6 × 6 × 6 = 216") is not a wrong span."""
    words = normalize_answer(value)
    return any(f" {words} " in f" {normalize_answer(text)} " for text in texts)


def training_inputs(examples: list[QAExample], candidates, spans_per_question: int,
                    sentences_before: int = 0, wrong_spans: dict[str, list[tuple[int, int]]] | None = None,
                    soft_labels: bool = False) -> list[tuple[str, str, float]]:
    """(question, marked context, label) for each example: the chosen wrong
    spans (``wrong_spans``, by id: another question's answer, part of this
    one's), the reader's best spans, labelled, and its first gold span when
    the reader did not find it. With ``soft_labels`` a reader's span is
    labelled with its F1, so part of an answer ("one founder of three")
    scores below the whole of it."""
    inputs = []
    wrong_spans = wrong_spans or {}
    for example in examples:
        for start, end in wrong_spans.get(example.id, []):
            inputs.append((example.question, marked_context(example.context, start, end,
                                                            sentences_before=sentences_before), 0))
        spans = candidates.get(("train", example.id), [])[:spans_per_question]
        seen = set()
        for start, end, _ in spans:
            text = example.context[start:end]
            label = span_f1(text, example) if soft_labels else float(is_right(text, example))
            inputs.append((example.question, marked_context(example.context, start, end, sentences_before=sentences_before),
                           label))
            seen.add((start, end))
        if example.answerable:
            text, start = example.answers[0]
            end = start + len(text)
            if text and example.context[start:end] == text and (start, end) not in seen:
                inputs.append((example.question,
                               marked_context(example.context, start, end, sentences_before=sentences_before), 1))
    return inputs


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a right span outscores a wrong one."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([positives, negatives]))) + 1
    return float((ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2)
                 / (len(positives) * len(negatives)))


def collate(batch, pad_id: int):
    import torch

    ids, mask = padded_batch([ids for ids, _ in batch], pad_id)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([label for _, label in batch],
                                                                        dtype=torch.float32)


def starting_point(args, settings, out: Path) -> tuple[Path, dict | None]:
    """The model folder training starts from, and the card of the verifier it continues (None: the reader's encoder)."""
    from rag.embedding.materialize import materialize_embedder
    from rag.reader import builtin_reader_path
    from rag.reader.assemble import assemble_model

    if args.continue_from is None:
        return builtin_reader_path(settings.reader_cache_dir, settings.embedder_cache_dir), None
    earlier = json.loads((args.continue_from / "verifier.json").read_text())
    read = earlier.get("recipe", {}).get("sentences_before", 0)
    if read != args.sentences_before:
        log.warning("%s read %d sentence(s) before the span's; this run teaches it to read %d", args.continue_from,
                    read, args.sentences_before)
    embedder = materialize_embedder(settings.embedder_cache_dir)
    return assemble_model(args.continue_from, embedder, out / "start"), earlier


def earlier_epochs(earlier: dict | None) -> int:
    """Epochs the continued verifier (and those it continued) already saw: its data is shuffled as the epochs after them."""
    if not earlier:
        return 0
    return math.ceil(earlier["recipe"].get("epochs", 1.0)) + earlier_epochs(earlier.get("continued_from"))


def keep_first_layers(model, layers: int) -> None:
    """Keep the encoder's first ``layers`` layers (0: all): a shallower verifier
    costs proportionally less to run, and the lower layers of a trained one
    are a better start for it than the reader's."""
    if layers and layers < model.config.num_hidden_layers:
        model.bert.encoder.layer = model.bert.encoder.layer[:layers]
        model.config.num_hidden_layers = layers


def distilled_labels(labels: list[float], teacher_logits: np.ndarray, weight: float) -> list[float]:
    """Each label mixed with a teacher verifier's probability: binary cross-entropy
    against the mix is ``1 - weight`` of the loss on the label and ``weight`` of
    the loss on the teacher's reading, which ranks the wrong spans as the label cannot."""
    teacher = 1 / (1 + np.exp(-teacher_logits.astype(np.float64)))
    return [float((1 - weight) * label + weight * p) for label, p in zip(labels, teacher)]


def model_logits(model, features: list[tuple[list[int], float]], pad_id: int, name: str = "") -> np.ndarray:
    """The model's logit on each input, in the inputs' order: read in batches of
    similar length (little padding), in bf16 where the CPU multiplies it natively;
    with a ``name``, progress is logged (a teacher reads every training input)."""
    import torch

    from rag.embedding.engine import cpu_has_fast_bf16

    order = sorted(range(len(features)), key=lambda i: len(features[i][0]))
    logits = np.zeros(len(features), dtype=np.float32)
    began = time.time()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_fast_bf16()):
        for begin in range(0, len(order), 64):
            chosen = order[begin:begin + 64]
            ids, mask, _ = collate([features[i] for i in chosen], pad_id)
            logits[chosen] = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().numpy()
            if name and begin % 6400 == 0:
                log.info("%s: %d of %d inputs read (%.0f s)", name, begin, len(order), time.time() - began)
    return logits


def teacher_logits(folder: Path, features: list[tuple[list[int], float]], pad_id: int, settings, out: Path) -> np.ndarray:
    """The logits of the verifier in ``folder`` on every training input, cached in the run folder."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from rag.embedding.materialize import materialize_embedder, sha256_file
    from rag.reader.assemble import assemble_model

    cache = out / f"teacher-logits-{sha256_file(folder / 'model.safetensors')[:12]}.npy"
    if cache.exists():
        logits = np.load(cache)
        if len(logits) == len(features):
            return logits
    path = assemble_model(folder, materialize_embedder(settings.embedder_cache_dir), out / "teacher")
    teacher = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32).eval()
    logits = model_logits(teacher, features, pad_id, "teacher")
    np.save(cache, logits)
    return logits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RAG_DATASETS", "../shared/datasets"))
    parser.add_argument("--out", default="runs/verifier", help="run folder: candidates, checkpoint, log, export")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--swap-negatives", type=float, default=0.5, metavar="SHARE",
                        help="share of PIAF and English questions also asked with a value swapped")
    parser.add_argument("--same-article-negatives", type=float, default=0.3, metavar="SHARE",
                        help="share of PIAF/XQuAD-en questions also asked of another paragraph of their article")
    parser.add_argument("--spans", type=int, default=2, help="reader spans per training question")
    parser.add_argument("--other-answers", type=float, default=0.0, metavar="SHARE",
                        help="share of answerable questions also shown another question's answer on their "
                             "paragraph, as a wrong span")
    parser.add_argument("--part-answers", type=float, default=0.0, metavar="SHARE",
                        help="share of answerable questions also shown a small part of their answer "
                             "(one name of three), as a wrong span")
    parser.add_argument("--same-kind-values", type=float, default=0.0, metavar="SHARE",
                        help="share of answerable questions also shown another value of their answer's kind "
                             "(person, year, number) in their paragraph, as a wrong span")
    parser.add_argument("--answer-removed", type=float, default=0.0, metavar="SHARE",
                        help="share of answerable questions also asked of their paragraph without the sentences "
                             "that hold their answer, as unanswerable questions")
    parser.add_argument("--english-on-spanish", type=float, default=0.0, metavar="SHARE",
                        help="share of the training articles' SQuAD-es v2.0 questions also asked in English "
                             "(adversarial unanswerable ones among them), as English questions on a foreign document")
    parser.add_argument("--soft-labels", action="store_true",
                        help=f"label each reader span with its F1 against the gold answer instead of F1 >= {RIGHT_F1}")
    parser.add_argument("--layers", type=int, default=0,
                        help="keep only the starting model's first LAYERS encoder layers (0: all), for speed")
    parser.add_argument("--distil-from", type=Path, metavar="FOLDER",
                        help="a trained verifier whose reading of each input is mixed into its label")
    parser.add_argument("--distil-weight", type=float, default=0.5,
                        help="the teacher's share of each label with --distil-from")
    parser.add_argument("--held-out-spans", type=int, default=5, help="reader spans kept per held-out question")
    parser.add_argument("--sentences-before", type=int, default=0,
                        help="sentences before the span's that the verifier reads (answering reads as many)")
    parser.add_argument("--continue-from", type=Path, metavar="FOLDER",
                        help="start from this trained verifier (e.g. rag/models/verifier) for further epochs, "
                             "its data in the order of the epochs after its own")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only this many training questions, and of each held-out set (smoke runs)")
    parser.add_argument("--eval-every", type=int, default=200, help="steps between held-out AUC readings")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop (and checkpoint) after this long")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from rag.embedding.engine import cpu_has_fast_bf16
    from rag.embedding.onnx_embedder import load_tokenizer
    from rag.reader import builtin_exports, make_onnx_reader
    from rag.settings import Settings

    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    torch.manual_seed(args.seed)

    mix, evaluation = load_mix(args.data_dir, args.seed, 1, args.same_article_negatives, True, args.swap_negatives)
    train = list({e.id: e for e in french_and_english(mix, args.data_dir)}.values())
    train += english_on_spanish(mix, args.data_dir, args.english_on_spanish, random.Random(args.seed + 10))
    if args.limit:
        train = train[: args.limit]
    train += answer_removed(train, args.answer_removed, random.Random(args.seed + 8))
    held = held_out_sets(evaluation, args.seed, args.data_dir)
    if args.limit:
        held = {name: examples[: args.limit] for name, examples in held.items()}
    log.info("%d training questions (%d unanswerable); held out: %s (%.0f s)", len(train),
             sum(not e.answerable for e in train), {k: len(v) for k, v in held.items()}, time.time() - began)

    candidates_file = out / "candidates.jsonl"
    reader = make_onnx_reader(settings, builtin_exports(settings))
    for name, examples in held.items():
        reader_candidates(reader, examples, candidates_file, args.held_out_spans, name)
    reader_candidates(reader, train, candidates_file, args.spans, "train")
    candidates = load_candidates(candidates_file)
    tokenizer = load_tokenizer(settings.embedder_cache_dir)
    pad_id = tokenizer.token_to_id("<pad>")

    wrong_spans: dict[str, list[tuple[int, int]]] = {}
    for chosen in (other_answers(train, args.other_answers, random.Random(args.seed + 5)),
                   part_answers(train, args.part_answers, random.Random(args.seed + 6)),
                   same_kind_values(train, load_entity_finder() if args.same_kind_values else None,
                                    args.same_kind_values, random.Random(args.seed + 7))):
        for question_id, span in chosen.items():
            wrong_spans.setdefault(question_id, []).append(span)
    rows = training_inputs(train, candidates, args.spans, args.sentences_before, wrong_spans, args.soft_labels)
    features = [(encode(tokenizer, question, [context])[0], label) for question, context, label in rows]
    right_inputs = sum(label >= RIGHT_F1 for _, label in features)
    log.info("%d inputs (%d right), %.0f tokens on average (%.0f s)", len(features),
             right_inputs, np.mean([len(ids) for ids, _ in features]), time.time() - began)

    if args.distil_from:
        mixed = distilled_labels([label for _, label in features],
                                 teacher_logits(args.distil_from, features, pad_id, settings, out), args.distil_weight)
        features = [(ids, label) for (ids, _), label in zip(features, mixed)]

    # The learning curve's yardstick: the reader's best span on 400 held-out SQuAD v2.0 questions.
    curve = []
    for example in held["squad-en-v2"][:400]:
        spans = candidates.get(("squad-en-v2", example.id), [])
        if spans:
            start, end, _ = spans[0]
            marked = marked_context(example.context, start, end, sentences_before=args.sentences_before)
            curve.append((encode(tokenizer, example.question, [marked])[0],
                          int(is_right(example.context[start:end], example))))

    start, earlier = starting_point(args, settings, out)
    model = AutoModelForSequenceClassification.from_pretrained(str(start), num_labels=1, dtype=torch.float32)
    keep_first_layers(model, args.layers)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = len(features) // args.batch_size
    total_steps = max(1, int(steps_per_epoch * args.epochs))
    optimizer, scheduler = optimizer_and_schedule(trainable, args.lr, total_steps, args.warmup)
    checkpoint = out / "checkpoint.pt"
    step = resume(checkpoint, model, optimizer, scheduler)
    if step:
        log.info("resumed at step %d of %d", step, total_steps)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_fast_bf16())

    def held_out_auc() -> float:
        model.eval()
        scores = model_logits(model, curve, pad_id)
        model.train()
        return auc(scores, np.array([label for _, label in curve]))

    loss_function = torch.nn.BCEWithLogitsLoss()
    log_file = open(out / "train-log.jsonl", "a")
    if step == 0:
        log_file.write(json.dumps({"step": 0, "held_out_auc": round(held_out_auc(), 4)}) + "\n")
    model.train()
    running, stopped_early = [], False
    while step < total_steps and not stopped_early:
        epoch, skip = divmod(step, steps_per_epoch)
        for index, batch in enumerate(batches(features, args.batch_size, epoch + earlier_epochs(earlier), args.seed)):
            if index < skip:
                continue
            ids, mask, labels = collate(batch, pad_id)
            with autocast:
                logits = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            loss = loss_function(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running.append(loss.item())
            if step % 50 == 0 or step == total_steps:
                entry = {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": round(float(np.mean(running)), 4),
                         "lr": scheduler.get_last_lr()[0], "minutes": round((time.time() - began) / 60, 2)}
                if step % args.eval_every == 0 or step == total_steps:
                    entry["held_out_auc"] = round(held_out_auc(), 4)
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log.info("%s", entry)
                running = []
            if step % args.checkpoint_every == 0:
                save_checkpoint(checkpoint, model, optimizer, scheduler, step)
            if (args.max_minutes and time.time() - began > args.max_minutes * 60) or step >= total_steps:
                stopped_early = step < total_steps
                break
    save_checkpoint(checkpoint, model, optimizer, scheduler, step)
    if stopped_early:
        log.info("time limit reached at step %d of %d; run again to resume", step, total_steps)
        return
    card = {
        "base": (f"the verifier of {args.continue_from} ({earlier['steps']} steps), trained further" if earlier
                 else "the built-in reader's encoder (multilingual-e5-small fine-tuned for extractive QA)"),
        "frozen": [FROZEN],
        "training_questions": len(train),
        "training_inputs": len(features),
        "right_inputs": right_inputs,
        "recipe": {k: v for k, v in vars(args).items()
                   if k not in ("data_dir", "out", "threads", "max_minutes", "continue_from", "distil_from")},
        "steps": step,
        "bf16_autocast": cpu_has_fast_bf16(),
        "minutes": round((time.time() - began) / 60, 1),
    }
    if args.distil_from:
        card["distilled_from"] = str(args.distil_from)
    if earlier:
        card["continued_from"] = {key: earlier[key] for key in ("base", "recipe", "steps", "minutes", "continued_from")
                                  if key in earlier}
    export_trained(model, out / "final", card, "BertForSequenceClassification", "verifier.json")
    log.info("exported to %s", out / "final")


if __name__ == "__main__":
    main()
