"""Span decoding, windows and offsets, on a tiny QA model built here (its
answers mean nothing; the decoding around it must still be exact)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rag.evaluation.reader import ReaderPrediction, fit_calibration, span_lengths
from rag.evaluation.squad import QAExample, best_scores, normalize_answer
from rag.reader.reader import Calibration, ExtractiveReader, trim_span, window_spans
from rag.reader.windows import Window, make_windows, span_labels


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory, settings) -> ExtractiveReader:
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from rag.embedding.materialize import materialize_embedder

    embedder = materialize_embedder(settings.embedder_cache_dir)
    folder = tmp_path_factory.mktemp("tiny-reader")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=250037, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512, pad_token_id=1)
    BertForQuestionAnswering(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedder / name, folder / name)
    reader = ExtractiveReader(str(folder), max_length=64, stride=16, max_answer_tokens=8)
    reader.warm_up()
    return reader


def window(offsets: list[tuple[int, int]]) -> Window:
    return Window(0, list(range(len(offsets))), np.array(offsets, dtype=np.int64))


def test_window_spans_picks_the_best_valid_span():
    # tokens: <s>, question, </s>, context x4, </s>
    w = window([(-1, -1), (-1, -1), (-1, -1), (0, 3), (3, 7), (7, 12), (12, 15), (-1, -1)])
    start = np.array([0.0, 9.0, 0, 1.0, 5.0, 0, 0, 9.0])  # the question and </s> score high but are not context
    end = np.array([0.0, 9.0, 0, 0, 1.0, 6.0, 0, 9.0])
    spans = window_spans(start, end, w, max_answer_tokens=3, top_k=3)
    margin, first, last = spans[0]
    assert (first, last) == (4, 5)
    assert margin == pytest.approx(11.0)  # 5 + 6 minus the null score 0
    assert all(w.context_mask[a] and w.context_mask[b] and 0 <= b - a < 3 for _, a, b in spans)


def test_no_answer_when_the_null_reading_wins():
    w = window([(-1, -1), (0, 3), (3, 7), (-1, -1)])
    spans = window_spans(np.array([8.0, 1, 0, 0]), np.array([8.0, 0, 1, 0]), w, 5, 1)
    assert spans[0][0] < 0
    assert Calibration().confidence(spans[0][0]) < 0.5


def test_calibration_is_a_monotonic_probability():
    calibration = Calibration(offset=4.0, scale=2.0)
    values = [calibration.confidence(m) for m in (-50, 0, 4, 8, 50)]
    assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1
    assert calibration.confidence(4.0) == pytest.approx(0.5)


def test_fit_calibration_separates_right_from_wrong():
    right = [ReaderPrediction(QAExample(str(i), "q", "ctx", [("Paris", 0)]), "Paris", 10 + i % 5, 0) for i in range(20)]
    wrong = [ReaderPrediction(QAExample(f"n{i}", "q", "ctx", []), "Lyon", -5 + i % 5, 0) for i in range(20)]
    calibration = fit_calibration(right + wrong)
    assert calibration.scale > 0
    assert all(calibration.confidence(p.margin) > 0.5 for p in right)
    assert all(calibration.confidence(p.margin) < 0.5 for p in wrong)


def test_span_lengths_compare_with_the_closest_gold_answer():
    gold = [("Arthur Mensch", 0), ("le PDG Arthur Mensch", 0)]
    predictions = [ReaderPrediction(QAExample(str(i), "q", "ctx", gold), text, 1.0, 0) for i, text in enumerate(
        ["Arthur Mensch", "le PDG Arthur Mensch", "Mensch",
         "Arthur Mensch, le scientifique en chef Guillaume Lample et Timothée Lacroix"])]
    lengths = span_lengths(predictions)
    assert lengths["spans_twice_too_long"] == 0.25  # only the list of names (11 words against 4)
    assert lengths["span_length_ratio_median"] == pytest.approx(1.0)
    assert span_lengths([]) == {}


def test_trim_span_drops_spaces_and_separators():
    text = "le PDG Arthur Mensch, le scientifique"
    start, end = trim_span(text, 6, 21)
    assert text[start:end] == "Arthur Mensch"


def test_windows_cover_a_long_passage_with_overlap(tiny_reader):
    passage = " ".join(f"mot{i}" for i in range(400))
    windows = make_windows(tiny_reader.tokenizer, ["Quel mot ?"], [passage], 64, 16, 16)
    assert len(windows) > 5
    covered = set()
    for w in windows:
        assert len(w.input_ids) <= 64
        for a, b in w.offsets[w.context_mask]:
            covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(passage) if not ch.isspace())
    answer_start = passage.index("mot250")
    labelled = [span_labels(w, answer_start, answer_start + 6) for w in windows]
    found = [(w, lab) for w, lab in zip(windows, labelled) if lab != (0, 0)]
    assert found
    for w, (a, b) in found:
        assert passage[w.offsets[a][0]:w.offsets[b][1]].strip() == "mot250"


def test_spans_map_back_to_their_passage(tiny_reader):
    passages = [
        "Mistral AI a été fondée à Paris en 2023 par trois chercheurs.",
        "Le Chat est un robot conversationnel. " * 30,  # several windows
        "Émojis 😀, « guillemets » et l’apostrophe typographique.",
    ]
    spans = tiny_reader.run("Qui a fondé Mistral ?", passages, top_k=20)
    assert spans
    assert len({(s.passage_index, s.start, s.end) for s in spans}) == len(spans)  # duplicates merged
    assert [s.score for s in spans] == [s.margin for s in spans] == sorted((s.margin for s in spans), reverse=True)
    for span in spans:
        assert span.text == passages[span.passage_index][span.start:span.end]
        assert span.text == span.text.strip() and span.text
        assert 0 <= span.confidence <= 1


def test_passage_priors_rank_spans_across_passages(tiny_reader):
    passages = ["Mistral AI a été fondée à Paris en 2023.", "Le Chat est un robot conversationnel de Mistral AI."]
    plain = tiny_reader.run("Qui a fondé Mistral ?", passages, top_k=50)
    loser = 1 - plain[0].passage_index
    priors = [0.0, 0.0]
    priors[loser] = plain[0].margin - max(s.margin for s in plain if s.passage_index == loser) + 1.0
    boosted = tiny_reader.run("Qui a fondé Mistral ?", passages, top_k=50, passage_priors=priors)
    assert boosted[0].passage_index == loser
    assert [s.score for s in boosted] == sorted((s.score for s in boosted), reverse=True)
    for span in boosted:  # the prior moves the ranking, never the margin or the confidence
        assert span.score == pytest.approx(span.margin + priors[span.passage_index])
    same = {(s.passage_index, s.start, s.end): s for s in plain}
    assert all(same[(s.passage_index, s.start, s.end)].confidence == s.confidence
               for s in boosted if (s.passage_index, s.start, s.end) in same)
    with pytest.raises(ValueError):
        tiny_reader.run("Qui a fondé Mistral ?", passages, passage_priors=[1.0])


def test_squad_normalization_handles_french():
    assert normalize_answer("l’accord") == normalize_answer("accord")
    assert normalize_answer("Le «Chat»") == "chat"
    assert best_scores("le directeur de la technologie", ["directeur de la technologie"]) == (1.0, 1.0)
    assert best_scores("", []) == (1.0, 1.0)
    assert best_scores("Paris", []) == (0.0, 0.0)


def test_unanswerable_copies_never_hold_the_answer():
    import random

    from rag.training.data import unanswerable_copies

    article = [QAExample(f"q{i}", f"question {i}", f"Paragraphe {i} : la réponse est R{i}.", [(f"R{i}", 25)],
                         article_index=i // 3) for i in range(9)]
    for same_article in (False, True):
        copies = unanswerable_copies(article, article, 1.0, random.Random(0), "neg", same_article=same_article)
        assert copies
        originals = {e.id: e for e in article}
        for copy in copies:
            original = originals[copy.id.removesuffix("-neg")]
            assert not copy.answerable and copy.context != original.context
            assert original.answers[0][0] not in copy.context
            same = any(e.context == copy.context and e.article_index == original.article_index for e in article)
            assert same == same_article


def test_french_and_english_keeps_piaf_and_english_questions(tmp_path):
    from rag.training.data import french_and_english

    def squad(path, qas):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
            {"id": i, "question": q, "answers": []} for i, q in qas]}]}]}))

    squad(tmp_path / "piaf" / "piaf-v1.0.json", [("p1", "Qui ?")])
    squad(tmp_path / "xquad" / "xquad.en.json", [("x1", "Who?")])
    examples = [QAExample(i, q, "c") for i, q in [
        ("p1", "Qui ?"), ("p1-neg", "Qui ?"), ("x1", "Who?"), ("x1-en-de", "Who?"), ("x1", "Wer?"), ("es1", "¿Quién?"),
    ]]
    kept = french_and_english(examples, tmp_path)
    expected = [("p1", "Qui ?"), ("p1-neg", "Qui ?"), ("x1", "Who?"), ("x1-en-de", "Who?")]
    assert [(e.id, e.question) for e in kept] == expected


def test_distillation_loss_is_zero_only_where_the_student_matches_the_teacher(tiny_reader):
    import torch

    from rag.training.train import distillation_loss

    model = tiny_reader.model
    ids = torch.randint(5, 1000, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    with torch.no_grad():
        teacher = model(input_ids=ids, attention_mask=mask)
        student = model(input_ids=ids, attention_mask=mask)
        every_row = torch.tensor([True, True, True])
        assert distillation_loss(student, teacher, mask, every_row).item() == pytest.approx(0.0, abs=1e-6)
        student.start_logits[0, 3] += 5.0
        assert distillation_loss(student, teacher, mask, every_row).item() > 0.01
        # Only the selected rows count, and padding never does.
        assert distillation_loss(student, teacher, mask, torch.tensor([False, True, True])).item() == pytest.approx(
            0.0, abs=1e-6)
        student.start_logits[2, 10] += 50.0
        assert distillation_loss(student, teacher, mask, torch.tensor([False, False, True])).item() == pytest.approx(
            0.0, abs=1e-6)


@pytest.mark.parametrize("card_name, fitted", [("reader.json", ("calibration", "held_out_device")),
                                               ("verifier.json", ("confidence", "min_confidence"))])
def test_interpolated_model_lies_between_its_two_ends(tmp_path, card_name, fitted):
    import torch
    from safetensors.torch import load_file, save_file

    from rag.training.interpolate import interpolate

    ends = {}
    for name, value in (("start", 1.0), ("tuned", 3.0)):
        folder = tmp_path / name
        folder.mkdir()
        save_file({"w": torch.full((2, 2), value, dtype=torch.float16)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text("{}")
        (folder / card_name).write_text(json.dumps({**dict.fromkeys(fitted, "measured on this end"), "recipe": {"lr": 2e-5}}))
        ends[name] = folder
    for alpha, expected in ((0.0, 1.0), (0.25, 1.5), (1.0, 3.0)):
        out = interpolate(ends["start"], ends["tuned"], alpha, tmp_path / f"mix-{alpha}")
        weight = load_file(str(out / "model.safetensors"))["w"]
        assert weight.dtype == torch.float16 and torch.all(weight == expected)
        card = json.loads((out / card_name).read_text())
        # what was fitted on one end's readings is not carried over; its recipe is
        assert card["interpolated"]["alpha"] == alpha and not set(fitted) & set(card) and card["recipe"] == {"lr": 2e-5}
    save_file({"w": torch.zeros(3)}, str(ends["tuned"] / "model.safetensors"))
    with pytest.raises(ValueError, match="not the same architecture"):
        interpolate(ends["start"], ends["tuned"], 0.5, tmp_path / "bad")
    with pytest.raises(ValueError, match="alpha"):
        interpolate(ends["start"], ends["start"], 1.5, tmp_path / "bad")
    (ends["start"] / card_name).unlink()
    with pytest.raises(ValueError, match="no card"):
        interpolate(ends["start"], ends["start"], 0.5, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # a refused call writes nothing
