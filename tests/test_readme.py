"""Every example of the README, run as a reader would run it: its shell lines
as commands, its Python blocks as code, its shown output compared with what
the command prints. (The set-up and test commands are CI's own: test_ci.py.)"""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from files import make_docx, make_pdf

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# (language, body) of each fenced block, indented ones (in a list) included
BLOCKS = [(m.group(2), textwrap.dedent(m.group(3)).strip())
          for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", README, re.S | re.M)]


def blocks(language: str, containing: str) -> str:
    """The one README block of ``language`` that holds ``containing``."""
    found = [body for lang, body in BLOCKS if lang == language and containing in body]
    assert len(found) == 1, f"{len(found)} {language} blocks of the README hold {containing!r}"
    return found[0]


def commands(block: str) -> list[list[str]]:
    """A shell block's commands, each as its words, comments left out."""
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def run_python(code: str, namespace: dict) -> list:
    """Run a README block as a session would: the value of each bare expression line, in order."""
    values = []
    for statement in ast.parse(code).body:
        if isinstance(statement, ast.Expr):
            values.append(eval(compile(ast.Expression(statement.value), "README", "eval"), namespace))
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), "README", "exec"), namespace)
    return values


def readers_env(**more: str) -> dict[str, str]:
    """The environment of a newcomer's shell: none of this machine's RAG_ settings, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **more}


def run(words: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    program = {"rag": [sys.executable, "-m", "rag"], "python": [sys.executable]}[words[0]]
    result = subprocess.run([*program, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{shlex.join(words)}: {result.stderr[-2000:]}"
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chat:
    """``python ui.py`` (with the README's flags) as a process, until it serves its page."""

    def __init__(self, words: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen([sys.executable, *words[1:]], cwd=cwd,
                                        env={**env, "RAG_PORT": str(self.port)},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> Chat:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as page:
                    if page.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the chat did not start within 3 minutes")

    def __exit__(self, *_) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The files the README's examples name: an annual report in French whose
    page 2 says who founded the company, meeting minutes, a folder of notes."""
    folder = tmp_path_factory.mktemp("readme")
    make_pdf(folder / "report.pdf", [
        "Rapport annuel de la société Vendrix pour l'année 2023.",
        "Vendrix a été fondée en 1987 par Odile Marchetti à Grenoble.",
        "Le chiffre d'affaires de Vendrix a atteint 42 millions d'euros.",
    ])
    make_docx(folder / "minutes.docx", ["Compte rendu du conseil de Talvane.",
                                        "La prochaine assemblée de Talvane se tiendra à Brest."])
    (folder / "notes").mkdir()
    (folder / "notes" / "quorra.md").write_text("# Quorra\n\nLa société *Quorra* emploie **240** personnes.\n",
                                                 encoding="utf-8")
    return folder


def test_the_example_prints_what_the_readme_shows():
    example = blocks("console", "$ rag ask")
    command, *shown = example.splitlines()
    printed = run(shlex.split(command.removeprefix("$ ")), ROOT, readers_env()).stdout
    assert printed.strip().splitlines() == shown


def test_the_collection_example_in_the_shell_and_in_the_chat(files, tmp_path):
    from gradio_client import Client

    env = readers_env(RAG_INDEX_DIR=str(tmp_path / "index"))
    printed = {}
    for words in commands(blocks("bash", "rag remove minutes.docx --collection work")):
        if words[:2] == ["python", "ui.py"]:
            with Chat(words, ROOT, env) as chat:  # the chat of that collection, by flag and by link
                reply = Client(chat.url, verbose=False).predict("Qui a fondé Vendrix ?", api_name="/ask")
                with urllib.request.urlopen(f"{chat.url}?collection=work", timeout=30) as page:
                    assert page.status == 200
            assert "Odile Marchetti" in reply and "report, page 2" in reply
            continue
        printed[shlex.join(words[:3])] = run(words, files, env).stdout
    assert "added: report.pdf" in printed["rag add report.pdf"]
    assert "report.pdf\treport\t1 passages, 3 pages" in printed["rag list --collection"]
    for question, quoted in (("Qui a fondé Vendrix ?", "Passage source (report.pdf, page 2,"),
                             ("Who founded Vendrix?", "Quoted as written in the French document.")):
        answer = printed[f"rag ask {shlex.quote(question)}"]
        assert answer.startswith("Odile Marchetti\n") and quoted in answer, answer
    assert "removed: minutes.docx" in printed["rag remove minutes.docx"]


def test_the_milvus_lite_example(files, tmp_path):
    """The Milvus Lite block: add and ask in the shell, then the chat on the same file (its own process)."""
    from gradio_client import Client

    env = readers_env(RAG_INDEX_DIR=str(tmp_path / "index"))
    (added, asked, chat) = commands(blocks("bash", "--store milvus:index/passages.db"))
    assert "added: report.pdf" in run(added, files, env).stdout
    assert run(asked, files, env).stdout.startswith("Odile Marchetti\n")
    with Chat([chat[0], str(ROOT / "ui.py"), *chat[2:]], files, env) as served:  # the README's folder as cwd
        reply = Client(served.url, verbose=False).predict("Qui a fondé Vendrix ?", api_name="/ask")
    assert "Odile Marchetti" in reply and (files / "index" / "passages.db").is_dir()


def test_the_python_examples(files, tmp_path, monkeypatch):
    monkeypatch.chdir(files)
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    text, score, (start, end, doc_id), sources, follow_up = run_python(blocks("python", "from rag import ask"), {})
    assert "Arthur Mensch" in text and score >= 0.5 and doc_id == "article-mistral-microsoft-2024-02"
    assert end - start == len(text) and sources and "Timothée Lacroix" in follow_up.text
    (added, replaced, unchanged, failed), where, entries, removed = run_python(
        blocks("python", "from rag import Pipeline, Settings"), {})
    assert sorted(added) == ["quorra.md", "report.pdf"] and not (replaced or unchanged or failed)
    assert where == ("report.pdf", "report", 2)  # as the README's comment says
    assert [e["id"] for e in entries] == ["report.pdf", "quorra.md"] and removed == ["report.pdf"]


def test_the_shell_examples(files, tmp_path):
    env = readers_env(RAG_INDEX_DIR=str(tmp_path / "index"))
    printed = [run(words, files, env).stdout for words in commands(blocks("bash", "rag index --rebuild"))]
    assert "Arthur Mensch" in printed[0].splitlines()[0]
    assert "Timothée Lacroix" in json.loads(printed[1])["text"]
    assert printed[2].startswith("Odile Marchetti\n") and "report.pdf, page 2" in printed[2]


def test_the_chat_and_its_api_examples(tmp_path):
    """``python ui.py`` as the README starts it, then the README's gradio_client calls against it."""
    env = readers_env(RAG_INDEX_DIR=str(tmp_path / "index"))
    assert ("bash", "python ui.py") in BLOCKS
    with Chat(["python", "ui.py"], ROOT, env) as chat:
        code = blocks("python", "from gradio_client import Client").replace("http://127.0.0.1:7860/", chat.url)
        reply, data = run_python(code, {})
    assert "Arthur Mensch" in reply and "<mark>" in reply
    assert "Guillaume Lample" in data["text"]


def test_the_training_example_runs(tmp_path):
    """The README's training command, held to 16 examples and one epoch: from scratch it
    has learnt too little to be calibrated, and says so; from the shipped reader
    (``--init``) it exports, calibrates and assembles a reader that answers."""
    words = commands(blocks("bash", "rag.training.train"))[0]
    words[words.index("--out") + 1] = str(tmp_path / "scratch")
    short = ["--limit", "16", "--epochs", "1", "--batch-size", "8"]
    scratch = subprocess.run([sys.executable, *words[1:], *short], cwd=ROOT, env=readers_env(), capture_output=True,
                             text=True, timeout=900)
    assert scratch.returncode == 1 and "train it longer" in scratch.stderr and "Traceback" not in scratch.stderr
    assert (tmp_path / "scratch" / "final" / "reader.json").exists()
    words[words.index("--out") + 1] = str(tmp_path / "run")
    run([*words, *short, "--init", "rag/models/reader"], ROOT, readers_env(), timeout=900)
    assembled = tmp_path / "run" / "assembled"
    answer = run(["rag", "ask", "Qui a fondé Mistral ?", "--reader", str(assembled), "--json"], ROOT,
                 readers_env(RAG_INDEX_DIR=str(tmp_path / "index")))
    assert set(json.loads(answer.stdout)) >= {"text", "score", "sources"}
