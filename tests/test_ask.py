"""ask() end to end: real models, real index, English and French."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rag import Pipeline
from rag.answer.language import detect_language
from rag.evaluation.qa import QAItem, evaluate, load_questions
from rag.evaluation.squad import best_scores, normalize_answer


def assert_is_a_span(pipeline, answer):
    if answer.answered:
        document = pipeline.document(answer.doc_id)
        assert document.text[answer.start:answer.end] == answer.text
        source = answer.sources[answer.source_index]
        assert source.start <= answer.start < answer.end <= source.end
    assert 0.0 <= answer.score <= 1.0


def test_answers_are_spans_of_the_document(pipeline, dev_questions):
    for item in dev_questions:
        answer = pipeline.run(item["question"])
        assert_is_a_span(pipeline, answer)
        assert answer.language == item["lang"]
        assert [s.score for s in answer.sources] == sorted((s.score for s in answer.sources), reverse=True)


def test_retrieval_recall_on_the_dev_set(pipeline, dev_questions):
    """The reader must see the answer: a gold answer is in the passages read."""
    for item in dev_questions:
        if item["answerable"]:
            passages = normalize_answer(" ".join(s.text for s in pipeline.run(item["question"]).sources))
            assert any(normalize_answer(a) in passages for a in item["answers"]), item["question"]


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_quality_floor_per_language(pipeline, dev_questions, lang):
    """A regression floor, below the figures `rag eval` reports in the README."""
    scores = [best_scores(pipeline.run(q["question"]).text, q["answers"])[1]
              for q in dev_questions if q["answerable"] and q["lang"] == lang]
    assert np.mean(scores) >= 0.65


def test_follow_up_questions_use_the_history(pipeline):
    items = load_questions("followups.jsonl")
    with_history = [best_scores(pipeline.run(i.question, i.history).text, i.answers)[1] for i in items]
    assert {i.lang for i in items} == {"en", "fr"} and len(items) >= 6
    assert np.mean(with_history) >= 0.5


def test_eval_scores_a_follow_up_and_its_standalone_rewrite_apart(pipeline):
    follow_up = QAItem("f", "fr", "Et qui est le directeur de la technologie ?", ["Timothée Lacroix"], True,
                       history=["Qui a fondé Mistral ?"],
                       standalone="Qui est le directeur de la technologie de Mistral ?")
    plain = QAItem("p", "fr", "Où la jeune pousse est-elle établie ?", ["Paris"], True)
    report = evaluate(pipeline, [follow_up, plain])
    alone = best_scores(pipeline.run(follow_up.standalone).text, follow_up.answers)[1]
    with_history = best_scores(pipeline.run(follow_up.question, follow_up.history).text, follow_up.answers)[1]
    assert [row["standalone_f1"] for row in report["questions"]] == [alone, None]
    assert report["questions"][0]["f1"] == with_history
    assert report["summary"]["fr"]["standalone_f1"] == alone


def test_blank_or_odd_history_entries_are_skipped(pipeline):
    follow_up = "Et qui est le directeur de la technologie ?"
    expected = pipeline.run(follow_up, ["Qui a fondé Mistral ?"])
    for history in (["Qui a fondé Mistral ?", "\x01 "], ["Qui a fondé Mistral ?", 42, "   "]):
        assert pipeline.run(follow_up, history).text == expected.text
    assert pipeline.previous_question(["", "\x00"]) is None


def test_an_impossible_confidence_bar_abstains(pipeline):
    strict = Pipeline(replace(pipeline.settings, min_confidence=1.01), pipeline.documents)
    strict.embedder, strict.reader, strict.retriever = pipeline.embedder, pipeline.reader, pipeline.retriever
    answer = strict.run("Qui a fondé Mistral ?")
    assert answer.text == "" and answer.start is None and not answer.answered
    assert answer.sources  # the passages read are still reported


@pytest.mark.parametrize("question", ["", "   ", "\n\t", "\x00\x01"])
def test_empty_questions_are_refused(pipeline, question):
    with pytest.raises(ValueError, match="empty"):
        pipeline.run(question)


def test_huge_question_is_cut_with_a_warning(pipeline):
    answer = pipeline.run("Qui a fondé Mistral ? " * 500)
    assert answer.warnings and len(answer.question) <= pipeline.settings.max_question_chars
    assert_is_a_span(pipeline, answer)


@pytest.mark.parametrize("question", [
    "<img src=x onerror=alert(1)> Who founded Mistral?",
    "Qui a fondé Mistral ? 😀🚀",
    "من أسس ميسترال؟",
    "Qui\u202e a fondé Mistral ?",
    "Qui a fondé\x07 Mistral ?",
    "ＱＵＩ Ａ ＦＯＮＤÉ ＭＩＳＴＲＡＬ ？",
])
def test_odd_questions_are_answered_safely(pipeline, question):
    assert_is_a_span(pipeline, pipeline.run(question))


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=300))
def test_fuzzed_questions_never_crash(pipeline, question):
    try:
        answer = pipeline.run(question, history=[question[:50]])
    except ValueError as error:  # only blank questions are refused
        assert "empty" in str(error)
        assert not "".join(ch for ch in question if ch.isprintable()).strip()
        return
    assert_is_a_span(pipeline, answer)


def test_concurrent_questions_give_the_same_answers(pipeline, dev_questions):
    questions = [q["question"] for q in dev_questions[:6]]
    expected = [pipeline.run(q).text for q in questions]
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = pipeline.run(questions[i % len(questions)]).text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected[i % len(questions)] for i in range(12))


class SlowTruncationSetting:
    """A Rust tokenizer that pauses after each change of its truncation setting."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def enable_truncation(self, *args, **kwargs) -> None:
        self.tokenizer.enable_truncation(*args, **kwargs)
        time.sleep(0.002)


@pytest.mark.parametrize("runtime", ["auto", "torch"])
def test_embedder_and_reader_share_their_tokenizer_safely(pipeline, torch_pipeline, monkeypatch, runtime):
    """A fast tokenizer keeps its truncation settings from call to call; the
    embedder and the reader share one and use different settings. A pause
    after each settings change widens the race so that, unguarded, the two
    threads encode with each other's settings within a few calls."""
    pipeline = pipeline if runtime == "auto" else torch_pipeline
    tokenizer = pipeline.reader.tokenizer
    assert tokenizer is pipeline.embedder.tokenizer
    if runtime == "auto":  # the Rust tokenizer itself: both models get one slow stand-in for it
        tokenizer = SlowTruncationSetting(tokenizer)
        monkeypatch.setattr(pipeline.embedder, "_tokenizer", tokenizer)
        monkeypatch.setattr(pipeline.reader, "_tokenizer", tokenizer)
    passages = [c.chunk.text for c in pipeline.retriever.run(["Qui a fondé Mistral ?"], 4)]
    passages.append(pipeline.documents[0].text)  # long enough for its windows to depend on the truncation
    question = "Who founded Mistral AI, and when?"
    reference = [(w.input_ids, w.offsets.tolist()) for w in pipeline.reader.windows(question, passages)]
    if runtime == "torch":
        set_settings = tokenizer.set_truncation_and_padding

        def slow_set_settings(*args, **kwargs):
            set_settings(*args, **kwargs)
            time.sleep(0.002)

        monkeypatch.setattr(tokenizer, "set_truncation_and_padding", slow_set_settings)
    errors: list[str] = []
    done = threading.Event()

    def embed() -> None:
        while not done.is_set():
            try:
                pipeline.embedder.embed_queries(["Qui a fondé Mistral ?"])
            except Exception as error:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(repr(error))

    embedding = threading.Thread(target=embed)
    embedding.start()
    mismatches = 0
    try:
        for _ in range(40):
            try:
                windows = pipeline.reader.windows(question, passages)
                mismatches += [(w.input_ids, w.offsets.tolist()) for w in windows] != reference
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))
    finally:
        done.set()
        embedding.join()
    assert (mismatches, errors) == (0, [])


def test_language_detection():
    assert detect_language("Qui a fondé Mistral ?") == "fr"
    assert detect_language("Who founded Mistral?") == "en"
    assert detect_language("Où la jeune pousse est-elle établie ?") == "fr"


@pytest.mark.parametrize("question", [
    "Combien de paramètres compte Mistral Large ?",  # on topic: the article names the model, not its size
    "Who won the 2018 World Cup?",  # off topic
])
def test_the_reader_refuses_what_the_article_does_not_say(pipeline, question):
    answer = pipeline.run(question)
    assert not answer.answered and answer.text == "" and answer.start is None
    assert answer.score >= 1 - pipeline.min_confidence  # its confidence that the article does not say
    assert answer.sources  # the passages it read before refusing
