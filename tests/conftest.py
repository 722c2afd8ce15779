"""Shared fixtures: the real packaged models, a real index in a temporary
folder, nothing downloaded (the hub is switched off for the whole session)."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from rag import Pipeline, Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV_SET = ROOT.parent / "shared" / "eval" / "dev_qa.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    return Settings.from_env(index_dir=tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="session")
def pipeline(settings) -> Pipeline:
    pipeline = Pipeline(settings)
    pipeline.warm_up()
    return pipeline


@pytest.fixture(scope="session")
def torch_pipeline(pipeline) -> Pipeline:
    """The same documents and index, the built-in models run by transformers."""
    other = Pipeline(replace(pipeline.settings, runtime="torch"), pipeline.documents)
    other.warm_up()
    return other


@pytest.fixture(scope="session")
def dev_questions() -> list[dict]:
    if not DEV_SET.exists():
        pytest.skip(f"{DEV_SET} is not beside the repository")
    return read_jsonl(DEV_SET)
