"""Collections with the real models and real files: each format, add /
remove / re-add, files that cannot be added, an interrupted indexing run
resumed, two writers, and collections that never touch one another."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from files import make_docx, make_pdf, write_long_text
from rag import Pipeline
from rag.index import CollectionBusy
from rag.index.collection import LOCK
from rag.index.manifest import MANIFEST

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def library(tmp_path) -> Path:
    """One small file of each supported format, each about a different fictitious company."""
    folder = tmp_path / "library"
    folder.mkdir()
    make_pdf(folder / "rapport-annuel.pdf", [
        "Le rapport annuel de la société Vendrix couvre l'année 2023.",
        "Vendrix a été fondée en 1987 par Odile Marchetti à Grenoble.",
        "Le chiffre d'affaires de Vendrix a atteint 42 millions d'euros.",
    ], title="Vendrix annual report")
    make_docx(folder / "compte-rendu.docx", ["Compte rendu de la réunion du conseil de Talvane.",
                                              "La prochaine assemblée de Talvane se tiendra à Brest."],
              [["Budget de Talvane", "18 000 euros"]])
    (folder / "page.html").write_text(
        "<html><head><title>Orbilo</title><script>var x = 'Paris';</script></head><body>"
        "<h1>Orbilo</h1><p>Le siège d'<b>Orbilo</b> est à Dijon.</p></body></html>", encoding="utf-8")
    (folder / "notes.md").write_text("# Quorra\n\nLa société *Quorra* emploie **240** personnes.\n", encoding="utf-8")
    (folder / "ancien.txt").write_bytes("Le directeur de Pélissac s'appelle Étienne Lefèvre.".encode("cp1252"))
    return folder


@pytest.fixture
def mine(pipeline, tmp_path) -> Pipeline:
    """A pipeline over a new, empty collection, sharing the loaded models."""
    from dataclasses import replace

    other = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="mine"))
    other.embedder, other.reader = pipeline.embedder, pipeline.reader
    return other


def folder_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK}


def rag(*args: str, index_dir: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env,
                           timeout=600, **kwargs)


def test_each_format_is_answered_with_its_document_and_page(mine, library):
    with pytest.raises(ValueError, match="n.a pas encore de document"):
        mine.run("Qui a fondé Vendrix ?")
    report = mine.add([library])
    assert sorted(report.added) == ["ancien.txt", "compte-rendu.docx", "notes.md", "page.html", "rapport-annuel.pdf"]
    assert not report.failed
    expected = {
        "Qui a fondé Vendrix ?": ("Odile Marchetti", "rapport-annuel.pdf", 2),
        "What was Vendrix's revenue?": ("42 millions d'euros", "rapport-annuel.pdf", 3),
        "Où se tiendra la prochaine assemblée de Talvane ?": ("Brest", "compte-rendu.docx", None),
        "Quel est le budget de Talvane ?": ("18 000 euros", "compte-rendu.docx", None),
        "Où est le siège d'Orbilo ?": ("Dijon", "page.html", None),
        "Combien de personnes Quorra emploie-t-elle ?": ("240", "notes.md", None),
        "Comment s'appelle le directeur de Pélissac ?": ("Étienne Lefèvre", "ancien.txt", None),
    }
    for question, (text, doc_id, page) in expected.items():
        answer = mine.run(question)
        assert text in answer.text and (answer.doc_id, answer.page) == (doc_id, page), question
        assert mine.document(doc_id).text[answer.start:answer.end] == answer.text
    assert mine.run("Qui a fondé Vendrix ?").title == "Vendrix annual report"  # the title the PDF declares
    html = mine.document("page.html")
    assert "Paris" not in html.text and "<" not in html.text and html.title == "Orbilo"


def test_a_pdf_is_titled_by_its_metadata_unless_that_is_a_placeholder(mine, tmp_path):
    from rag.documents.converters import declared_title

    for placeholder in ("untitled", "Microsoft Word - rapport.docx", "Document1", "scan_0042.pdf", "  ", None, 3):
        assert declared_title(placeholder) is None, placeholder
    assert declared_title("  Rapport   annuel 2023 ") == "Rapport annuel 2023"
    untitled = make_pdf(tmp_path / "note-interne.pdf", ["Talvane a ouvert un bureau à Brest."])  # "untitled"
    assert mine.add([untitled]).added == ["note-interne.pdf"]
    assert mine.document("note-interne.pdf").title == "note interne"


def test_add_remove_and_add_again(mine, library):
    pdf = library / "rapport-annuel.pdf"
    assert mine.add([pdf]).added == ["rapport-annuel.pdf"]
    copy = library / "copie.pdf"
    copy.write_bytes(pdf.read_bytes())
    again = mine.add([pdf, copy])
    assert again.unchanged == ["rapport-annuel.pdf", "copie.pdf"] and not again.changed  # known by content
    make_pdf(pdf, ["Vendrix a été fondée en 1990 par Paul Ardent à Metz."])
    assert mine.add([pdf]).replaced == ["rapport-annuel.pdf"]  # a changed file replaces its old version
    assert "Paul Ardent" in mine.run("Qui a fondé Vendrix ?").text
    assert len(list((mine.collection.folder / "vectors").iterdir())) == 1
    assert mine.remove(["rapport-annuel.pdf"]) == ["rapport-annuel.pdf"]
    assert mine.collection.entries() == [] and not list((mine.collection.folder / "vectors").iterdir())
    with pytest.raises(ValueError, match="no document 'rapport-annuel.pdf'"):
        mine.remove(["rapport-annuel.pdf"])
    assert mine.add([pdf]).added == ["rapport-annuel.pdf"]
    assert "Paul Ardent" in mine.run("Qui a fondé Vendrix ?").text


def test_files_that_cannot_be_added_change_nothing(mine, library, tmp_path):
    from pypdf import PdfReader, PdfWriter

    mine.add([library / "notes.md"])
    before = folder_hashes(mine.collection.folder)
    bad = tmp_path / "bad"
    bad.mkdir()
    locked = PdfWriter()
    locked.append(PdfReader(library / "rapport-annuel.pdf"))
    locked.encrypt("secret")
    locked.write(bad / "verrouille.pdf")
    scanned = PdfWriter()
    scanned.add_blank_page(300, 300)
    scanned.write(bad / "scan.pdf")
    (bad / "abime.pdf").write_bytes(b"%PDF-1.4 not really")
    (bad / "abime.docx").write_bytes(b"PK not really")
    (bad / "binaire.txt").write_bytes(bytes(range(256)) * 8)
    (bad / "vide.txt").write_text("  \n ")
    (bad / "tableur.xlsx").write_bytes(b"PK")
    mine.settings.max_document_mb = 1
    (bad / "enorme.txt").write_text("mot " * (2**20 // 4 + 10))
    report = mine.add([*sorted(bad.iterdir()), bad / "absent.txt"])
    assert not report.changed
    reasons = {name: str(why) for name, why in report.failed.items()}
    assert "encrypted" in reasons["verrouille.pdf"] and "no text layer" in reasons["scan.pdf"]
    assert "OCR" in reasons["scan.pdf"] and "not a readable PDF" in reasons["abime.pdf"]
    assert "not a readable Word" in reasons["abime.docx"] and "encoding" in reasons["binaire.txt"]
    assert "empty" in reasons["vide.txt"] and "not supported" in reasons["tableur.xlsx"]
    assert "limit" in reasons["enorme.txt"] and "does not exist" in reasons["absent.txt"]
    assert folder_hashes(mine.collection.folder) == before


def test_another_collection_leaves_the_default_one_untouched(pipeline, library, tmp_path):
    default_folder = pipeline.collection.folder
    assert default_folder.name == "default" and (default_folder / MANIFEST).exists()
    before = folder_hashes(default_folder)
    index_dir = pipeline.settings.index_dir
    assert rag("add", str(library / "notes.md"), "--collection", "autre", index_dir=index_dir).returncode == 0
    answer = rag("ask", "Combien de personnes Quorra emploie-t-elle ?", "--collection", "autre", "--json",
                 index_dir=index_dir)
    assert "240" in json.loads(answer.stdout)["text"]
    assert rag("remove", "notes.md", "--collection", "autre", index_dir=index_dir).returncode == 0
    assert folder_hashes(default_folder) == before


def test_a_second_writer_gets_a_clear_message(mine, library):
    from filelock import FileLock

    mine.add([library / "notes.md"])
    with FileLock(str(mine.collection.folder / LOCK)):
        result = rag("add", str(library / "page.html"), "--collection", "mine",
                     index_dir=mine.settings.index_dir)
        assert result.returncode == 2 and "Another process is changing collection 'mine'" in result.stderr
        assert "Traceback" not in result.stderr
        readers = rag("ask", "Combien de personnes Quorra emploie-t-elle ?", "--collection", "mine", "--json",
                      index_dir=mine.settings.index_dir)
        assert "240" in json.loads(readers.stdout)["text"]  # readers need no lock
    with pytest.raises(CollectionBusy):
        with FileLock(str(mine.collection.folder / LOCK)):
            mine.add([library / "page.html"])


def test_an_interrupted_add_resumes_where_it_stopped(mine, library, tmp_path):
    """Kill `rag add` while it embeds a long text: the collection stays as it
    was, and the next add reuses the batches already written."""
    mine.add([library / "notes.md"])
    before = folder_hashes(mine.collection.folder)
    long_text = write_long_text(tmp_path / "long.txt", 600)
    env = {**os.environ, "RAG_INDEX_DIR": str(mine.settings.index_dir), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-m", "rag", "add", str(long_text), "--collection", "mine"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pending = mine.collection.folder / "pending"
    deadline = time.monotonic() + 300
    while len(list(pending.glob("*/*.npy"))) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    written = len(list(pending.glob("*/*.npy")))
    assert written >= 2
    assert {k: v for k, v in folder_hashes(mine.collection.folder).items() if k in before} == before
    assert [e["id"] for e in mine.collection.entries()] == ["notes.md"]  # still readable, as it was
    report = mine.add([long_text])
    assert report.added == ["long.txt"] and report.resumed >= 2 * mine.collection.batch_size
    assert not list(pending.iterdir())
    index = mine.collection.load()
    rows = [i for i, c in enumerate(index.store.chunks) if c.doc_id == "long.txt"]
    sample = [rows[0], rows[len(rows) // 2], rows[-1]]  # from reused batches and from new ones
    stored = np.stack([index.store.faiss_index.reconstruct(i) for i in sample])
    fresh = mine.embedder.embed_passages([index.store.chunks[i].text for i in sample])
    assert np.allclose(stored, fresh, atol=1e-5)
