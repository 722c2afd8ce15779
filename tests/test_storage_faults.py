"""Names and disks that could hurt a collection, through the real ``rag``
command and the real chat handlers: collection names that try to leave the
index folder, a read-only index folder (a real read-only mount), a file
where a folder should be, and hostile files given to ``rag add``."""
from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from files import make_docx
from hostile import broken_xml_docx, nested_html, zip_bomb_docx
from rag import Pipeline, Settings
from rag.index.manifest import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
BAD_NAMES = ["../escaped", "/tmp/absolute", "a/b", "", ".", "..", ".hidden", "a\\b", "x" * 65]


def rag(*args: str, index_dir: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=environment,
                          timeout=timeout, cwd=index_dir.parent)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a command that failed as a user should see it: exit code 2, one line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def library(tmp_path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "notes.md").write_text("# Quorra\n\nLa société *Quorra* emploie **240** personnes.\n", encoding="utf-8")
    (folder / "ancien.txt").write_text("Le directeur de Pélissac s'appelle Étienne Lefèvre.", encoding="utf-8")
    return folder


@pytest.fixture
def work(pipeline, tmp_path, library) -> Pipeline:
    """A collection 'work' with two documents, sharing the loaded models."""
    work = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="work"))
    work.embedder, work.reader = pipeline.embedder, pipeline.reader
    assert work.add([library]).added
    return work


@contextmanager
def read_only(folder: Path):
    """``folder`` on a read-only mount (root ignores file permissions, so a
    bind mount it is), or read-only by permissions for another user."""
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"no read-only mount here: {mounted.stderr.decode().strip()}")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for path, mode in modes.items():
                path.chmod(mode)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_collection_name_that_is_a_path_is_refused_everywhere(tmp_path, name):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    with pytest.raises(ValueError, match="not a collection name"):
        Settings.from_env({}, index_dir=index_dir, collection=name)
    if name:  # the environment (an empty variable means: not set)
        with pytest.raises(ValueError, match="not a collection name"):
            Settings.from_env({"RAG_COLLECTION": name}, index_dir=index_dir)
    note = tmp_path / "note.txt"
    note.write_text("Le siège de Quorra est à Dijon.", encoding="utf-8")
    for command in (["list"], ["add", str(note)], ["ask", "Où est Quorra ?"], ["remove", "note.txt"]):
        assert "not a collection name" in one_line_error(rag(*command, "--collection", name, index_dir=index_dir))
    if name:
        result = rag("list", index_dir=index_dir, env={"RAG_COLLECTION": name})
        assert "not a collection name" in one_line_error(result)
    chat = subprocess.run([sys.executable, str(ROOT / "ui.py"), "--collection", name], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "RAG_INDEX_DIR": str(index_dir)})
    assert chat.returncode == 2 and "not a collection name" in chat.stderr and "Traceback" not in chat.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "note.txt"]  # nothing written beside it
    assert not list(index_dir.iterdir())


def test_a_link_out_of_the_index_folder_is_refused(tmp_path):
    index_dir, outside = tmp_path / "index", tmp_path / "outside"
    index_dir.mkdir()
    outside.mkdir()
    (index_dir / "linked").symlink_to(outside)
    with pytest.raises(ValueError, match="would leave the index folder"):
        Pipeline(Settings.from_env({}, index_dir=index_dir, collection="linked"))


def test_hostile_files_are_refused_by_rag_add_with_a_reason(pipeline, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    deep = nested_html(files / "profond.html", 20_000)  # took 27 s before; 200,000 over 10 minutes
    bomb = zip_bomb_docx(files / "bombe.docx")
    good = make_docx(tmp_path / "bon.docx", ["Le conseil de Talvane se réunit à Brest."])
    broken = broken_xml_docx(files / "casse.docx", good)
    (files / "pas-un-zip.docx").write_text("hello", encoding="utf-8")
    index_dir = pipeline.settings.index_dir
    result = rag("add", str(deep), str(bomb), str(broken), str(files / "pas-un-zip.docx"), "--collection",
                 "hostile", index_dir=index_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "added: profond.html" in result.stdout
    reasons = [line for line in result.stderr.splitlines() if line.startswith("not added: ")]
    assert len(reasons) == 3, result.stderr
    assert any("bombe.docx unpacks to 1024 MB" in line for line in reasons)
    assert any("casse.docx is not a readable Word" in line for line in reasons)
    assert any("pas-un-zip.docx is not a readable Word" in line for line in reasons)
    assert str(files) not in result.stderr  # files are named, not their folder
    answer = rag("ask", "Où est le fond du puits ?", "--collection", "hostile", index_dir=index_dir)
    assert answer.returncode == 0 and "douze mètres" in answer.stdout


def test_a_read_only_index_folder_is_told_and_still_answers(work, library, tmp_path):
    index_dir = work.settings.index_dir
    folder = work.collection.folder
    (folder / "vectors" / next(p.name for p in (folder / "vectors").iterdir())).unlink()  # damaged: a file gone
    with read_only(index_dir):
        for command in (["add", str(library / "notes.md"), "--collection", "new"],
                        ["add", str(tmp_path / "library"), "--collection", "work"],
                        ["remove", "notes.md", "--collection", "work"],
                        ["index", "--rebuild", "--collection", "work"]):
            result = rag(*command, index_dir=index_dir)
            if command[0] == "index":  # rebuilt in memory, but not saved: said, and a failure
                assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
                assert "read-only file system" in result.stderr
                continue
            message = one_line_error(result)
            assert "read-only file system" in message and "RAG_INDEX_DIR" in message, message
        answer = rag("ask", "Combien de personnes Quorra emploie-t-elle ?", "--collection", "work",
                     index_dir=index_dir)
        assert answer.returncode == 0 and "240" in answer.stdout, answer.stderr
        assert "Answering from the index in memory" in answer.stderr and "Traceback" not in answer.stderr

        from rag.web.chat_app import ChatApp

        chat = ChatApp(work)
        *_, status, cleared = chat.add_files([str(shutil.copy(library / "notes.md", tmp_path / "upload.md"))], "work")
        assert "read-only file system" in html.unescape(status) and cleared is None
        *_, status = chat.remove_document("notes.md", "work")
        assert "read-only file system" in html.unescape(status)
    assert sorted(e["id"] for e in work.collection.entries()) == ["ancien.txt", "notes.md"]


def test_a_file_where_a_folder_should_be_is_told_and_still_answers(work, library):
    index_dir, folder = work.settings.index_dir, work.collection.folder
    shutil.rmtree(folder / "vectors")
    (folder / "vectors").write_text("in the way")
    answer = rag("ask", "Combien de personnes Quorra emploie-t-elle ?", "--collection", "work", index_dir=index_dir)
    assert answer.returncode == 0 and "240" in answer.stdout, answer.stderr
    assert "a file where a folder should be" in answer.stderr and "Traceback" not in answer.stderr
    (library / "autre.txt").write_text("Le siège de Quorra est à Dijon.", encoding="utf-8")
    message = one_line_error(rag("add", str(library / "autre.txt"), "--collection", "work", index_dir=index_dir))
    assert "a file where a folder should be" in message and "move that file away" in message
    assert (folder / MANIFEST).exists() and (folder / "vectors").read_text() == "in the way"


def test_a_full_disk_is_told_and_leaves_the_collection_as_it_was(work, library, tmp_path):
    """A collection on a real, tiny file system that fills up while a document is indexed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("no tmpfs mount here")
    try:
        shutil.copytree(work.collection.folder, small / "work")
        before = (small / "work" / MANIFEST).read_bytes()
        big = library / "long.txt"
        big.write_text(" ".join(f"La phrase numéro {n} parle de Quorra." for n in range(20_000)), encoding="utf-8")
        message = one_line_error(rag("add", str(big), "--collection", "work", index_dir=small))
        assert "is on a full disk" in message and "free some space" in message, message
        assert (small / "work" / MANIFEST).read_bytes() == before
        answer = rag("ask", "Combien de personnes Quorra emploie-t-elle ?", "--collection", "work", index_dir=small)
        assert answer.returncode == 0 and "240" in answer.stdout, answer.stderr
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_read_only_model_cache_still_answers(pipeline, tmp_path):
    """A model cache prepared once and mounted read-only (a shared image): the models load from
    their exports, compiled at each start instead of cached, and the answer is the same."""
    settings = pipeline.settings
    pipeline.load_index()
    cache = tmp_path / "cache"
    cache.mkdir()
    for folder in (settings.embedder_cache_dir, settings.reader_cache_dir, settings.verifier_cache_dir,
                   settings.export_cache_dir):
        (cache / folder.name).symlink_to(folder)  # prepared; no compiled models yet
    with read_only(cache):
        result = rag("ask", "Qui a fondé Mistral ?", "--json", index_dir=settings.index_dir,
                     env={"RAG_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == pipeline.run("Qui a fondé Mistral ?").text
    if settings.engine == "openvino":
        assert "Compiled models are not cached" in result.stderr
    assert not (cache / "openvino").exists() and "Traceback" not in result.stderr
