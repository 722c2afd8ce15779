"""Training the verifier: its wrong spans taken from other questions' answers,
and a run continued from a trained verifier, which starts from its weights,
sees its data in a new order, and reads its inputs as the verifier it
continues was trained to read them."""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from rag.evaluation.squad import QAExample
from rag.training.train import batches
from rag.training.verifier import (distilled_labels, earlier_epochs, keep_first_layers, other_answers, part_answers,
                                   same_kind_values, starting_point, training_inputs)
from rag.verifier import BUILTIN_VERIFIER, builtin_sentences_before

HEAD = "classifier.weight"


def arguments(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"continue_from": Path(str(BUILTIN_VERIFIER)),
                                 "sentences_before": builtin_sentences_before(), **changes})


def test_a_continued_run_starts_from_the_verifiers_weights(settings, tmp_path):
    start, earlier = starting_point(arguments(), settings, tmp_path)
    with safe_open(str(start / "model.safetensors"), framework="pt") as assembled, \
            safe_open(str(BUILTIN_VERIFIER.joinpath("model.safetensors")), framework="pt") as trained:
        assert assembled.get_tensor(HEAD).float().equal(trained.get_tensor(HEAD).float())
    assert earlier == json.loads(BUILTIN_VERIFIER.joinpath("verifier.json").read_text())


def test_a_continued_run_shuffles_as_the_next_epoch():
    card = json.loads(BUILTIN_VERIFIER.joinpath("verifier.json").read_text())
    offset = earlier_epochs(card)
    assert offset >= 1 and earlier_epochs(None) == 0  # the built-in verifier was trained at least one epoch
    features = list(range(64))
    assert next(batches(features, 8, 0 + offset, 13)) != next(batches(features, 8, 0, 13))


def test_a_continued_run_counts_every_epoch_before_it():
    first = {"recipe": {"epochs": 1.0}}
    second = {"recipe": {"epochs": 0.75}, "continued_from": first}
    assert earlier_epochs(second) == 2 and earlier_epochs({"recipe": {}, "continued_from": second}) == 3


def test_a_continued_run_that_reads_more_context_says_so(settings, tmp_path, caplog):
    read = builtin_sentences_before()
    with caplog.at_level("WARNING", logger="rag.train.verifier"):
        starting_point(arguments(sentences_before=read + 1), settings, tmp_path)
    assert f"read {read} sentence(s) before the span's; this run teaches it to read {read + 1}" in caplog.text


PARAGRAPH = ("Vendrix was founded in 1998 by Odile Marchetti in Lyon. "
             "Its founder, Odile Marchetti, left the company in 2011.")


def asked(question_id: str, question: str, answer: str, nth: int = 0) -> QAExample:
    start = -1
    for _ in range(nth + 1):
        start = PARAGRAPH.index(answer, start + 1)
    return QAExample(question_id, question, PARAGRAPH, [(answer, start)])


def test_another_questions_answer_becomes_a_wrong_span_of_this_one():
    who = asked("who", "Who founded Vendrix?", "Odile Marchetti")
    examples = [who, asked("when", "When was Vendrix founded?", "1998"),
                asked("where", "Where was Vendrix founded?", "Lyon"),
                asked("who-again", "Who left Vendrix in 2011?", "Odile Marchetti", nth=1),
                QAExample("who-swap", "Who founded Orbix?", PARAGRAPH, [])]
    chosen = other_answers(examples, 1.0, random.Random(0))
    assert set(chosen) == {"who", "when", "where", "who-again"}  # never for a question with no answer
    start, end = chosen["who"]
    assert PARAGRAPH[start:end] in {"1998", "Lyon"}  # not the same name at its other place
    rows = training_inputs(examples, {}, 2, wrong_spans={key: [span] for key, span in chosen.items()})
    question, marked, label = rows[0]
    assert question == "Who founded Vendrix?" and f"[[ {PARAGRAPH[start:end]} ]]" in marked and label == 0
    assert other_answers(examples, 0.0, random.Random(0)) == {}


def test_too_small_a_part_of_an_answer_becomes_a_wrong_span_of_it():
    founders = QAExample("founders", "Who founded Vendrix, and when?", PARAGRAPH,
                         [("1998 by Odile Marchetti in Lyon", 23)])
    examples = [founders, asked("where", "Where was Vendrix founded?", "Lyon"),
                QAExample("who-swap", "Who founded Orbix?", PARAGRAPH, [])]
    chosen = part_answers(examples, 1.0, random.Random(0))
    assert set(chosen) == {"founders"}  # a one-word answer has no part, a question with no answer no answer
    start, end = chosen["founders"]
    part = PARAGRAPH[start:end]
    assert part in {"1998", "Odile", "Marchetti", "Lyon"}  # under a third of the words; never "by" or "in" alone
    rows = training_inputs([founders], {}, 2, wrong_spans={"founders": [(start, end)]})
    assert [(f"[[ {part} ]]" in marked, label) for _, marked, label in rows] == [(True, 0), (False, 1)]
    assert part_answers(examples, 0.0, random.Random(0)) == {}


BREWERY = ("La brasserie a été fondée en 1891 par Louis Perrin à Lyon. "
           "Son gendre Marcel Dubois l'a vendue en 1952 à un groupe de Marseille.")


def test_another_value_of_the_answers_kind_becomes_a_wrong_span():
    from rag.training.negatives import load_entity_finder

    def brewery(question_id: str, question: str, answer: str) -> QAExample:
        return QAExample(question_id, question, BREWERY, [(answer, BREWERY.index(answer))])

    examples = [brewery("year", "En quelle année la brasserie a-t-elle été fondée ?", "1891"),
                brewery("who", "Qui a fondé la brasserie ?", "Louis Perrin"),
                brewery("sold", "Qui a vendu la brasserie en 1952 ?", "Marcel Dubois"),
                brewery("when-sold", "Quand la brasserie fondée en 1891 a-t-elle été vendue ?", "1952"),
                QAExample("unanswerable", "Qui a fondé la brasserie de Nantes ?", BREWERY, [])]
    chosen = same_kind_values(examples, load_entity_finder(), 1.0, random.Random(0))
    wrong = {question_id: BREWERY[start:end] for question_id, (start, end) in chosen.items()}
    # a year for a year, a person for a person; never a value the question names itself
    assert wrong == {"year": "1952", "who": "Marcel Dubois", "sold": "Louis Perrin"}
    assert same_kind_values(examples, None, 0.0, random.Random(0)) == {}


def test_soft_labels_score_part_of_an_answer_below_the_whole():
    founders = QAExample("founders", "Who founded Vendrix?", PARAGRAPH, [("1998 by Odile Marchetti", 23)])
    assert PARAGRAPH[23:46] == "1998 by Odile Marchetti"
    whole, part = (23, 46, 0.9), (31, 46, 0.8)  # the reader's spans: the whole answer, then "Odile Marchetti"
    candidates = {("train", "founders"): [whole, part]}
    hard = [label for _, _, label in training_inputs([founders], candidates, 2)]
    soft = [label for _, _, label in training_inputs([founders], candidates, 2, soft_labels=True)]
    assert hard == [1.0, 1.0]  # "Odile Marchetti" has F1 2/3: both "right" at the 0.5 bar
    assert soft[0] == 1.0 and soft[1] == pytest.approx(2 / 3)


def test_a_shallower_verifier_keeps_the_first_layers_and_says_so_in_its_config():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=1))
    second = model.bert.encoder.layer[1].attention.self.query.weight.clone()
    keep_first_layers(model, 2)
    assert len(model.bert.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    assert model.bert.encoder.layer[1].attention.self.query.weight.equal(second)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 1)
    keep_first_layers(model, 0)  # 0 keeps them all
    assert len(model.bert.encoder.layer) == 2


def test_distilled_labels_move_each_label_towards_the_teachers_reading():
    labels = distilled_labels([1.0, 0.0, 0.0], np.array([0.0, 0.0, 4.0]), 0.5)
    assert labels[0] == pytest.approx(0.75) and labels[1] == pytest.approx(0.25)
    assert labels[2] > labels[1]  # a wrong span the teacher found plausible is punished less
    assert distilled_labels([1.0, 0.0], np.array([-9.0, 9.0]), 0.0) == [1.0, 0.0]


def test_a_diagnostic_set_is_scored_by_the_combination_but_never_fitted_on():
    """The answer-removed set is reported at the bar; the figures of the sets
    the combination is fitted on are the same with it as without it."""
    from rag.evaluation.verifier import Question, decide, fit_confidence, out_of_fold, row
    from rag.reader import builtin_reader_calibration

    rng = np.random.default_rng(0)
    context = "Jeanne Martin a fondé Zorblax en 1998 à Lyon, où travaillent 340 personnes."

    def question(group: str, index: int, answerable: bool, looks_answerable: bool | None = None) -> Question:
        answers = [("Jeanne Martin", 0)] if answerable else []
        example = QAExample(f"{group}-{index}", "Qui a fondé Zorblax ?", context, answers)
        tempting = answerable if looks_answerable is None else looks_answerable
        spans = [(0, 13, float(rng.normal(3 if tempting else 1))), (22, 29, float(rng.normal(0)))]
        logits = [float(rng.normal(2 if tempting else -1)), float(rng.normal(-2))]
        return Question(group, example, spans, logits)

    questions = [question(group, i, answerable) for group in ("squad-en-v2", "piaf")
                 for answerable in (True, False) for i in range(60)]
    questions += [question("piaf-swap-negatives", i, False) for i in range(60)]
    # unanswerable, half of them with the signals of an answerable question: some are refused, some not
    diagnostic = [question("piaf-answer-removed-negatives", i, False, i % 2 == 0) for i in range(40)]
    # and a set with answerable questions too (English questions on Spanish paragraphs)
    crossed = [question("squad-v2-en-on-es", i, answerable) for answerable in (True, False) for i in range(30)]
    calibration = builtin_reader_calibration()
    decisions = out_of_fold(questions, 2, calibration)
    weights = fit_confidence(questions, 2)  # on every question, as the command fits it
    scored = [decide(q, weights, 2, calibration) for q in diagnostic]
    crossed_scored = [decide(q, weights, 2, calibration) for q in crossed]
    with_it = row(questions, decisions, None, (diagnostic + crossed, scored + crossed_scored))
    without = row(questions, decisions)
    refused = with_it.pop("piaf-answer-removed-negatives_refused_at_bar")
    figures = {key.removeprefix("squad-v2-en-on-es_"): with_it.pop(key) for key in list(with_it)
               if key.startswith("squad-v2-en-on-es_")}
    assert with_it == without
    assert refused == round(float(np.mean([confidence < without["bar"] for _, confidence, *_ in scored])), 3)
    assert 0 < refused < 1
    assert set(figures) == {"refused_at_bar", "f1_at_bar", "auc", "refused_at_f1_0.75"}
    assert figures["auc"] > 0.5 and 0 <= figures["refused_at_f1_0.75"] <= 1


def test_the_evaluation_reads_the_others_only_under_the_early_stop():
    """``decide`` chooses as ``rag.verifier.read_again`` answers: the best span alone when its
    combined confidence reaches the early stop, else the best of all the spans."""
    from rag.evaluation.verifier import Question, decide
    from rag.reader import builtin_reader_calibration

    context = "Jeanne Martin a fondé Zorblax en 1998 à Lyon."
    example = QAExample("q", "Qui a fondé Zorblax ?", context, [("Jeanne Martin", 0)])
    question = Question("piaf", example, [(22, 29, 2.0), (0, 13, 1.0)], [0.5, 3.0])
    weights = np.array([0.1, 1.0, -0.5])  # the best span's value 0.2: confidence 0.55; the second's 2.6
    calibration = builtin_reader_calibration()
    assert decide(question, weights, 2, calibration, alternates_below=0.5)[::3] == ("Zorblax", 1)
    assert decide(question, weights, 2, calibration, alternates_below=0.6)[::3] == ("Jeanne Martin", 2)
    assert decide(question, weights, 2, calibration)[::3] == ("Jeanne Martin", 2)
