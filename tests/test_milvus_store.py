"""The Milvus store on a real Milvus Lite file: the same passages as the file
store, add / ask / remove / re-add, an interrupted add resumed, a second
process refused with a clear message, a missing or damaged Lite file, and a
Milvus server that does not answer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from files import write_long_text
from rag import Pipeline, Settings
from rag.index import StoreUnavailable
from rag.index.milvus_store import MilvusStore, check_store, client_for, milvus_name

pytest.importorskip("pymilvus")  # the test extra installs it; the default install does not

NOTE = "La société fictive Zorblax a son siège à Lyon. Elle a été fondée par Ada Vérin en 1999."


def on_milvus(pipeline: Pipeline, folder: Path, collection: str = "mine", lite: str = "store.db",
              index: str = "FLAT") -> Pipeline:
    """A pipeline over a collection of ``folder`` searched in a Milvus Lite file there, sharing the loaded models."""
    other = Pipeline(replace(pipeline.settings, index_dir=folder / "index", collection=collection,
                             store=f"milvus:{folder / lite}", milvus_index=index))
    other.embedder, other.reader = pipeline.embedder, pipeline.reader
    return other


def rag(folder: Path, *args: str, lite: str = "store.db", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_INDEX_DIR": str(folder / "index"), "RAG_STORE": f"milvus:{folder / lite}",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_store_names_are_checked_and_collection_names_map_one_to_one():
    assert check_store("files") == "files" and check_store("milvus:index/passages.db")
    assert check_store("milvus:http://localhost:19530")
    for wrong in ("milvus", "milvus:", "milvus:data", "faiss", "milvus:/tmp/x.sqlite"):
        with pytest.raises(ValueError, match="RAG_STORE must be"):
            check_store(wrong)
    with pytest.raises(ValueError, match="RAG_MILVUS_INDEX must be one of FLAT, HNSW"):
        Settings.from_env({"RAG_MILVUS_INDEX": "IVF"})
    names = ["a-b", "a_b", "a.b", "a__b", "a_hb", "A-b"]
    mapped = [milvus_name(n) for n in names]
    assert len(set(mapped)) == len(names) and all(m.replace("_", "").isalnum() for m in mapped)


@pytest.mark.parametrize("index", ["FLAT", "HNSW"])
def test_the_milvus_store_gives_the_file_stores_passages_on_the_dev_set(pipeline, dev_questions, tmp_path, index):
    """The default collection searched in Milvus Lite: the same four passages, in the
    same order, with the same similarities, for every development question."""
    milvus = on_milvus(pipeline, tmp_path, collection="default", index=index)
    milvus.warm_up()
    assert len(milvus.retriever.index) == len(pipeline.retriever.index) > 1
    for item in dev_questions:
        files = [(p.chunk, round(p.similarity, 4)) for p in pipeline.retriever.run([item["question"]], 4)]
        stored = [(p.chunk, round(p.similarity, 4)) for p in milvus.retriever.run([item["question"]], 4)]
        assert stored == files, item["question"]
    assert milvus.run(dev_questions[0]["question"]).text == pipeline.run(dev_questions[0]["question"]).text


def test_add_ask_remove_and_add_again_on_milvus_lite(pipeline, tmp_path):
    mine = on_milvus(pipeline, tmp_path)
    note = tmp_path / "zorblax.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert mine.add([note]).added == ["zorblax.txt"]
    answer = mine.run("Qui a fondé Zorblax ?")
    assert answer.answered and answer.text == "Ada Vérin"
    store = mine.retriever.index.store
    assert isinstance(store, MilvusStore) and not hasattr(store, "chunks")  # no passage is held in this process
    assert mine.remove(["zorblax.txt"]) == ["zorblax.txt"]
    assert len(mine.retriever.index) == 0
    client = client_for(mine.settings.store)
    rows = client.query(milvus_name("mine"), filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == 0  # the removed document's rows are deleted, not just hidden
    assert mine.add([note]).added == ["zorblax.txt"]
    assert mine.run("Who founded Zorblax?").text == "Ada Vérin"


def test_an_interrupted_add_resumes_and_leaves_no_rows_twice(pipeline, tmp_path):
    """`rag add` killed while it embeds and inserts a long text: the collection answers
    as before it; the next add reuses the batches written, and Milvus holds each passage once."""
    note = tmp_path / "zorblax.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert rag(tmp_path, "add", str(note), "--collection", "mine").returncode == 0
    long_text = write_long_text(tmp_path / "long.txt", 400)
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_STORE": f"milvus:{tmp_path / 'store.db'}",
           "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-m", "rag", "add", str(long_text), "--collection", "mine"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pending = tmp_path / "index" / "mine" / "pending"
    deadline = time.monotonic() + 300
    while len(list(pending.glob("*/*.npy"))) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL  # killed mid-way, not finished

    mine = on_milvus(pipeline, tmp_path)
    assert [e["id"] for e in mine.collection.entries()] == ["zorblax.txt"]
    mine.warm_up()
    assert len(mine.retriever.index) == 1  # the killed run's rows are not answered from
    assert mine.run("Qui a fondé Zorblax ?").text == "Ada Vérin"
    report = mine.add([long_text])
    assert report.added == ["long.txt"] and report.resumed >= 2 * mine.collection.batch_size
    expected = sum(e["passages"] for e in mine.collection.entries())
    rows = client_for(mine.settings.store).query(milvus_name("mine"), filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == expected == len(mine.retriever.index)
    found = mine.retriever.run(["Qui est le maire de Ville123 ?"], 4)
    assert any("M. Nom123." in p.chunk.text for p in found)  # passages of resumed and new batches alike


def test_a_second_process_on_one_lite_file_is_told_to_use_a_server(pipeline, tmp_path):
    """Milvus Lite serves one process: a `rag add` while this process holds the file is
    refused with what to do instead, and changes nothing."""
    mine = on_milvus(pipeline, tmp_path)
    note = tmp_path / "zorblax.txt"
    note.write_text(NOTE, encoding="utf-8")
    mine.add([note])
    other = tmp_path / "other.txt"
    other.write_text("La société fictive Talvane est à Brest.", encoding="utf-8")
    began = time.monotonic()
    result = rag(tmp_path, "add", str(other), "--collection", "mine")
    assert result.returncode == 2 and time.monotonic() - began < 60
    assert "open in another process" in result.stderr and "milvus:http://" in result.stderr
    assert "Traceback" not in result.stderr
    assert [e["id"] for e in mine.collection.entries()] == ["zorblax.txt"]


def test_a_missing_lite_file_is_filled_again_and_a_damaged_one_is_a_clear_message(pipeline, tmp_path):
    """The collection's folder keeps every passage and vector: a Lite file deleted is
    refilled from it without embedding again; one that cannot be opened is named, with
    what to do, and the collection's folder is left as it was."""
    note = tmp_path / "zorblax.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert rag(tmp_path, "add", str(note), "--collection", "mine").returncode == 0
    import shutil

    shutil.rmtree(tmp_path / "store.db")
    result = rag(tmp_path, "ask", "Qui a fondé Zorblax ?", "--collection", "mine")
    assert result.returncode == 0 and result.stdout.startswith("Ada Vérin")
    assert "filling it from the collection's files" in result.stderr and "Indexing" not in result.stderr

    (tmp_path / "damaged.db").write_bytes(b"\x00 not a Milvus Lite file")
    manifest = (tmp_path / "index" / "mine" / "collection.json").read_bytes()
    result = rag(tmp_path, "ask", "Qui a fondé Zorblax ?", "--collection", "mine", lite="damaged.db")
    assert result.returncode == 2 and "damaged.db cannot be opened" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "index" / "mine" / "collection.json").read_bytes() == manifest


def test_a_milvus_server_that_does_not_answer_is_a_clear_message_within_seconds(pipeline, tmp_path):
    unreachable = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="mine",
                                   store="milvus:http://127.0.0.1:9"))
    unreachable.embedder, unreachable.reader = pipeline.embedder, pipeline.reader
    note = tmp_path / "zorblax.txt"
    note.write_text(NOTE, encoding="utf-8")
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Milvus server at http://127.0.0.1:9 does not answer"):
        unreachable.add([note])
    assert time.monotonic() - began < 15
    assert unreachable.collection.entries() == []
