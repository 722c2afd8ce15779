"""The reader's training mix on the real data sets: nothing of a held-out
article, in any language, reaches training."""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import ROOT
from rag.training.data import SQUAD_EN, load_mix, load_squad_en, source_id, squad_en_examples

DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def mix():
    if not (DATASETS / SQUAD_EN[1]).exists():
        pytest.skip(f"{DATASETS} is not beside the repository")
    return load_mix(DATASETS, squad_en=True)


def test_no_question_or_paragraph_of_a_held_out_article_trains(mix):
    train, evaluation = mix
    trained_ids = {source_id(e) for e in train}
    trained_contexts = {e.context for e in train}
    for name, examples in evaluation.items():
        assert not {source_id(e) for e in examples} & trained_ids, name
        assert not {e.context for e in examples} & trained_contexts, name


def test_translations_of_held_out_articles_are_kept_out(mix):
    """XQuAD, SQuAD-es and SQuAD-it are translations of SQuAD's articles: a
    question id held out in English must not train in any language."""
    train, evaluation = mix
    held_english = {e.id for e in evaluation["squad-en-v2"]} | {e.id for e in evaluation["xquad-en"]}
    assert held_english
    assert not [e.id for e in train if source_id(e) in held_english]


def test_squad_en_is_held_out_with_its_adversarial_questions(mix):
    _, evaluation = mix
    held = evaluation["squad-en-v2"]
    articles = {e.title for e in held}
    assert 2 <= len(articles) <= 6  # about a tenth of v2.0's 33 articles
    unanswerable = sum(not e.answerable for e in held)
    assert 0.3 < unanswerable / len(held) < 0.7


def test_squad_en_counts_each_question_once(mix):
    """v2.0 repeats v1.1's answerable questions on the same articles; v1.1's
    articles that v2.0 lacks are still in."""
    v11, v20 = load_squad_en(DATASETS)
    examples = squad_en_examples(v11, v20)
    assert max(Counter(e.id for e in examples).values()) == 1
    assert {e.title for e in examples} == {e.title for e in v11}  # every article
    assert {e.id for e in v20} <= {e.id for e in examples}  # all of v2.0, adversarial questions included
    repeated = {(e.question, e.context) for e in v11} & {(e.question, e.context) for e in v20}
    assert len(examples) == len(v11) + len(v20) - len([e for e in v11 if (e.question, e.context) in repeated])


def test_english_questions_on_held_out_spanish_paragraphs_never_train(mix):
    """The cross-lingual diagnostic set: SQuAD v2.0's English question on the held-out Spanish
    translation of its paragraph, its adversarial questions kept; neither trains in any language."""
    from rag.training.data import english_questions_on

    train, evaluation = mix
    english = {e.id: e for e in load_squad_en(DATASETS)[1]}
    crossed = english_questions_on(evaluation["squad-es-v2"], DATASETS)
    assert len(crossed) == len(evaluation["squad-es-v2"]) > 100
    for spanish, asked in zip(evaluation["squad-es-v2"], crossed, strict=True):
        assert asked.question == english[spanish.id].question != spanish.question
        assert asked.context == spanish.context and asked.answerable == english[spanish.id].answerable
    assert 0.3 < sum(not e.answerable for e in crossed) / len(crossed) < 0.7
    assert not {source_id(e) for e in crossed} & {source_id(e) for e in train}
    assert not {e.context for e in crossed} & {e.context for e in train}


def test_the_verifiers_english_questions_on_spanish_paragraphs_come_from_training_articles(mix):
    """``--english-on-spanish``: only SQuAD-es v2.0 questions the mix already trains on, each once, in English."""
    import random

    from rag.training.verifier import english_on_spanish

    train, evaluation = mix
    asked = english_on_spanish(train, DATASETS, 1.0, random.Random(0))
    english = {e.id: e.question for e in load_squad_en(DATASETS)[1]}
    assert len(asked) == len({e.id for e in asked}) > 1000
    assert all(e.question == english[source_id(e)] for e in asked)
    assert {e.context for e in asked} <= {e.context for e in train}
    held = {source_id(e) for examples in evaluation.values() for e in examples}
    assert not {source_id(e) for e in asked} & held
    assert 0.2 < sum(not e.answerable for e in asked) / len(asked) < 0.6
    assert english_on_spanish(train, DATASETS, 0.0, random.Random(0)) == []
