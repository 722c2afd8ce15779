"""Training the verifier further: a run continued from a trained verifier
starts from its weights, sees its data in a new order, and reads its inputs
as the verifier it continues was trained to read them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from safetensors import safe_open

from rag.training.train import batches
from rag.training.verifier import earlier_epochs, starting_point
from rag.verifier import BUILTIN_VERIFIER

HEAD = "classifier.weight"


def arguments(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"continue_from": Path(str(BUILTIN_VERIFIER)), "sentences_before": 0, **changes})


def test_a_continued_run_starts_from_the_verifiers_weights(settings, tmp_path):
    start, earlier = starting_point(arguments(), settings, tmp_path)
    with safe_open(str(start / "model.safetensors"), framework="pt") as assembled, \
            safe_open(str(BUILTIN_VERIFIER.joinpath("model.safetensors")), framework="pt") as trained:
        assert assembled.get_tensor(HEAD).float().equal(trained.get_tensor(HEAD).float())
    assert earlier == json.loads(BUILTIN_VERIFIER.joinpath("verifier.json").read_text())


def test_a_continued_run_shuffles_as_the_next_epoch():
    card = json.loads(BUILTIN_VERIFIER.joinpath("verifier.json").read_text())
    offset = earlier_epochs(card)
    assert offset == 1 and earlier_epochs(None) == 0
    features = list(range(64))
    assert next(batches(features, 8, 0 + offset, 13)) != next(batches(features, 8, 0, 13))


def test_a_continued_run_must_read_what_its_verifier_read(settings, tmp_path):
    with pytest.raises(SystemExit, match="--sentences-before"):
        starting_point(arguments(sentences_before=1), settings, tmp_path)
