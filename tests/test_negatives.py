"""The swapped-value negative generator, with spaCy's real French pipeline:
each generated question is its source question with one value swapped for
another of its article, absent from its paragraph, and is unanswerable. And
the answer-removed generator: the question kept, the sentences holding its
answer cut from its paragraph."""
from __future__ import annotations

import random
import re

import pytest

from conftest import ROOT
from rag.evaluation.squad import QAExample, load_squad, normalize_answer
from rag.training.splits import held_out
from rag.training.negatives import answer_removed, load_entity_finder, swap_negatives, write_squad

PIAF = ROOT.parent / "shared" / "datasets" / "piaf" / "piaf-v1.0.json"


@pytest.fixture(scope="module")
def finder():
    pytest.importorskip("spacy", reason="the training extra is not installed: pip install -e '.[train]'")
    return load_entity_finder()


def swapped(source: str, generated: str) -> tuple[str, str]:
    """(the words taken out of ``source``, the words put in): the one stretch
    where the two differ, widened to whole words ("1998" → "1995", not "8" → "5")."""
    start = 0
    while start < min(len(source), len(generated)) and source[start] == generated[start]:
        start += 1
    end = 0
    while end < min(len(source), len(generated)) - start and source[-1 - end] == generated[-1 - end]:
        end += 1
    while start > 0 and source[start - 1].isalnum():
        start -= 1
    while end > 0 and source[len(source) - end].isalnum():
        end -= 1
    return source[start:len(source) - end], generated[start:len(generated) - end]


def check(negatives: list[QAExample], sources: list[QAExample]) -> None:
    by_id = {e.id: e for e in sources}
    article_text = {}
    for e in sources:
        article_text[e.article_index] = article_text.get(e.article_index, "") + "\n" + e.context
    assert negatives
    for negative in negatives:
        source = by_id[negative.id.removesuffix("-swap")]
        taken, put = swapped(source.question, negative.question)
        assert taken and put and taken != put
        assert taken in source.context  # the question was about a value of its paragraph
        assert put in article_text[source.article_index]  # swapped for a value of the same article
        assert put not in source.context  # which the question's own paragraph does not hold
        assert negative.context == source.context and negative.answers == [] and not negative.answerable


def test_swaps_values_of_the_same_article(finder, tmp_path):
    first = "La société Zorblax a été fondée en 1998 par Jeanne Martin à Lyon."
    second = "En 2005, Paul Ardent a ouvert une usine de Zorblax à Marseille."
    sources = [
        QAExample("q1", "Qui a fondé Zorblax à Lyon ?", first, [("Jeanne Martin", 44)], "Zorblax", 0),
        QAExample("q2", "En quelle année Zorblax a-t-elle été fondée à Lyon ?", first, [("1998", 35)], "Zorblax", 0),
        QAExample("q3", "Où Paul Ardent a-t-il ouvert une usine en 2005 ?", second, [("Marseille", 52)], "Zorblax", 0),
    ]
    negatives = swap_negatives(sources, finder, 1.0, random.Random(0))
    check(negatives, sources)
    write_squad(negatives, tmp_path / "negatives.json")
    assert [e.question for e in load_squad(tmp_path / "negatives.json")] == [e.question for e in negatives]
    assert not any(e.answerable for e in load_squad(tmp_path / "negatives.json"))


def test_on_held_out_piaf_articles(finder):
    if not PIAF.exists():
        pytest.skip(f"{PIAF} is not beside the repository")
    sources = [e for e in load_squad(PIAF) if held_out(e)][:120]
    negatives = swap_negatives(sources, finder, 1.0, random.Random(0))
    check(negatives, sources)
    assert len(negatives) >= len(sources) // 5


def test_cuts_the_sentences_that_hold_the_answer():
    paragraph = ("La société Zorblax a été fondée en 1998 par Jeanne Martin à Lyon. Elle fabrique des vélos "
                 "électriques et emploie 340 personnes. Son chiffre d'affaires a atteint 12 millions d'euros en 2020. "
                 "En 2005, Paul Ardent a ouvert une usine à Marseille, où travaillent 80 personnes.")
    year = paragraph.index("1998")
    employees = paragraph.index("340")
    sources = [
        QAExample("year", "En quelle année Zorblax a-t-elle été fondée ?", paragraph, [("1998", year)], "Zorblax", 0),
        QAExample("staff", "Combien de personnes Zorblax emploie-t-elle ?", paragraph,
                  [("340", employees)], "Zorblax", 0),
        # said twice ("Marseille" in the question's answer and elsewhere): kept out, it might still be answered
        QAExample("twice", "Où travaillent 80 personnes ?", paragraph.replace("Lyon", "Marseille"),
                  [("Marseille", paragraph.replace("Lyon", "Marseille").rindex("Marseille"))], "Zorblax", 0),
        QAExample("none", "Qui dirige Zorblax ?", paragraph, [], "Zorblax", 0),
    ]
    negatives = {e.id: e for e in answer_removed(sources, 1.0, random.Random(0))}
    assert set(negatives) == {"year-cut", "staff-cut"}
    assert negatives["year-cut"].context == paragraph[paragraph.index("Elle fabrique"):]
    assert negatives["staff-cut"].context == paragraph.replace("Elle fabrique des vélos électriques et emploie "
                                                               "340 personnes. ", "")
    for negative in negatives.values():
        assert negative.question == {e.id: e for e in sources}[negative.id.removesuffix("-cut")].question
        assert not negative.answerable


def test_answer_removed_on_held_out_piaf_articles():
    if not PIAF.exists():
        pytest.skip(f"{PIAF} is not beside the repository")
    sources = [e for e in load_squad(PIAF) if held_out(e)][:200]
    negatives = answer_removed(sources, 1.0, random.Random(0))
    by_id = {e.id: e for e in sources}
    assert len(negatives) >= len(sources) // 3
    for negative in negatives:
        source = by_id[negative.id.removesuffix("-cut")]
        for text, _ in source.answers:  # not one of its answers, word for word
            assert f" {normalize_answer(text)} " not in f" {normalize_answer(negative.context)} "
        # what is left is some of the source's own sentences
        assert len(negative.context) < len(source.context)
        assert all(sentence.strip() in source.context for sentence in re.split(r"(?<=[.!?…])\s", negative.context))
