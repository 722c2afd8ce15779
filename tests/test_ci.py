"""CI runs the README's own commands, so a green CI means the README works."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```(?:bash|sh)?\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    setup, tests = readme_command("### Install"), readme_command("### Test")
    assert setup in ci and tests in ci
    assert ci.index(setup) < ci.index(tests)
    assert "pytest" in tests


def test_readme_shows_the_api_and_the_chat():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python ui.py" in text and 'api_name="/ask"' in text and "from rag import ask" in text
