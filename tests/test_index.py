"""A collection round-trips through disk and repairs itself when it is
stale, truncated or corrupt, from the documents' stored text."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from rag import Pipeline
from rag.documents import Document, default_documents, load_document, parse_document
from rag.index.manifest import MANIFEST


@pytest.fixture
def fresh(pipeline, tmp_path) -> Pipeline:
    """A pipeline sharing the loaded models, with its own index folder."""
    other = pipeline.for_documents(pipeline.documents, tmp_path / "index")
    assert other.embedder is pipeline.embedder and other.reader is pipeline.reader
    assert other.collection.embedder is pipeline.embedder
    return other


def files_of(pipeline: Pipeline, kind: str) -> list:
    return sorted((pipeline.collection.folder / kind).glob("*"))


def test_chunks_keep_their_offsets(pipeline):
    document = pipeline.documents[0]
    chunks = pipeline.splitter.run([document])
    assert len(chunks) > 1
    for chunk in chunks:
        assert document.text[chunk.start:chunk.end] == chunk.text
    assert "M. Mensch" in " ".join(c.text for c in chunks)  # not cut after the title's full stop


def test_the_date_line_is_metadata():
    document = default_documents()[0]
    assert document.date == "2024-02"
    assert not document.text.startswith("date")
    assert parse_document("Just text.", "x").date is None
    with pytest.raises(ValueError):
        parse_document("date 2024-02   ", "empty")


def test_a_byte_order_mark_is_not_text(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("date 2024-03\nLa réunion aura lieu à Lyon.", encoding="utf-8-sig")
    document = load_document(path)
    assert document.date == "2024-03" and document.text == "La réunion aura lieu à Lyon."


def test_round_trip(fresh):
    built = fresh.load_index()
    loaded = fresh.collection.load(fresh.given_documents)
    assert loaded is not None and built.saved and loaded.saved
    assert loaded.store.chunks == built.store.chunks and len(loaded) > 1
    assert loaded.store.faiss_index.ntotal == len(built)
    query = fresh.embedder.embed_queries(["Qui a fondé Mistral ?"])[0]
    assert loaded.store.scored_search(query, 3) == built.store.scored_search(query, 3)
    numbers, scores = zip(*loaded.store.scored_search(query, 3))
    found = loaded.store.passages(list(numbers), query)
    assert [found[n][1] for n in numbers] == pytest.approx(list(scores), abs=1e-5)


def test_passage_vectors_match_sentence_transformers(fresh, torch_pipeline):
    """The index is embedded through an ONNX engine; the model's definition is sentence-transformers."""
    chunks = fresh.splitter.run(fresh.documents)[:8]
    lean = fresh.embedder.embed_passages([c.text for c in chunks])
    reference = torch_pipeline.embedder.embed_passages([c.text for c in chunks])
    assert (lean * reference).sum(axis=1).min() > 0.9999


# Manifests that are valid JSON of another shape than the one written.
ODD_MANIFESTS = ["[]", '"index"', "null", '{"format_version": 2}',
                 '{"format_version": 2, "built_from": [], "documents": {}}',
                 '{"format_version": 2, "built_from": {}, "documents": [{"id": 3}]}']


@pytest.mark.parametrize("damage", ["truncate-vectors", "garbage-passages", "bad-manifest", "missing-vectors",
                                    *(f"manifest:{text}" for text in ODD_MANIFESTS)])
def test_damaged_collection_is_repaired(fresh, damage, caplog):
    fresh.load_index()
    folder = fresh.collection.folder
    (vectors,), (passages,) = files_of(fresh, "vectors"), files_of(fresh, "passages")
    if damage == "truncate-vectors":
        vectors.write_bytes(vectors.read_bytes()[:1000])
    elif damage == "garbage-passages":
        passages.write_text("{not json\n")
    elif damage == "bad-manifest":
        (folder / MANIFEST).write_text("{")
    elif damage.startswith("manifest:"):
        (folder / MANIFEST).write_text(damage.removeprefix("manifest:"))
    else:
        vectors.unlink()
    with caplog.at_level(logging.WARNING):
        assert fresh.collection.load(fresh.given_documents) is None
        index = fresh.load_index()
    assert "rebuilding" in caplog.text or "recovering" in caplog.text
    assert index.store.faiss_index.ntotal == len(index) > 0
    assert fresh.collection.load(fresh.given_documents) is not None  # the repaired collection is intact on disk
    assert len(files_of(fresh, "vectors")) == 1  # and holds no leftover files


def test_settings_change_rebuilds_from_the_stored_text(fresh, caplog):
    fresh.load_index()
    changed = Pipeline(replace(fresh.settings, chunk_size=300, chunk_overlap=50), fresh.documents)
    changed.embedder = fresh.embedder
    with caplog.at_level(logging.WARNING):
        index = changed.load_index()
    assert "out of date" in caplog.text and "chunking" in caplog.text
    assert len(index) > len(fresh.splitter.run(fresh.documents))
    manifest = json.loads((fresh.collection.folder / MANIFEST).read_text())
    assert manifest["built_from"]["chunking"]["chunk_size"] == 300
    assert fresh.collection.load(fresh.given_documents) is None  # the old settings no longer match


def test_the_keyword_index_is_saved_read_back_and_follows_the_documents(fresh, monkeypatch, caplog):
    """Loading a collection reads its saved BM25 index instead of indexing every passage
    again; a change of documents makes a new one (the old is deleted); a damaged one is
    built again with a warning."""
    from rag.index.keywords import KeywordIndex

    built = fresh.load_index()
    (saved,) = files_of(fresh, "keywords")
    question = "Qui a fondé Mistral ?"
    expected = built.store.keyword_search(question, 5)
    assert expected

    def no_rebuild(texts):
        raise AssertionError("the keyword index was built again")

    with monkeypatch.context() as patched:
        patched.setattr(KeywordIndex, "build", staticmethod(no_rebuild))
        assert fresh.collection.load(fresh.given_documents).store.keyword_search(question, 5) == expected

    extra = Document(id="note", title="note", text="Le siège de l'entreprise fictive Zorblax est à Lyon.")
    fresh.collection.sync([*fresh.documents, extra])  # the writer saves the new set's index; the old one goes
    (renewed,) = files_of(fresh, "keywords")
    assert renewed.name != saved.name
    with monkeypatch.context() as patched:
        patched.setattr(KeywordIndex, "build", staticmethod(no_rebuild))
        index = fresh.collection.load([*fresh.documents, extra])
    assert [index.store.chunks[i].doc_id for i in index.store.keyword_search("Zorblax", 5)] == ["note"]

    for part in renewed.iterdir():
        part.write_bytes(b"\x00damaged")
    with caplog.at_level("WARNING"):
        again = fresh.collection.load([*fresh.documents, extra])
    assert "could not be read" in caplog.text
    assert [again.store.chunks[i].doc_id for i in again.store.keyword_search("Zorblax", 5)] == ["note"]
    with monkeypatch.context() as patched:  # and saved again in its place
        patched.setattr(KeywordIndex, "build", staticmethod(no_rebuild))
        assert fresh.collection.load([*fresh.documents, extra]).store.keyword_search("Zorblax", 5)


def test_sync_embeds_only_what_changed(fresh):
    """Syncing a collection to a new set of documents embeds the new one; the
    others keep their files, untouched."""
    fresh.load_index()
    (article_vectors,) = files_of(fresh, "vectors")
    written = article_vectors.stat().st_mtime_ns
    extra = Document(id="note", title="note", text="Le siège de l'entreprise fictive Zorblax est à Lyon.")
    fresh.collection.sync([*fresh.documents, extra])
    index = fresh.collection.load([*fresh.documents, extra])
    assert any(c.doc_id == "note" for c in index.store.chunks)
    assert article_vectors.stat().st_mtime_ns == written and len(files_of(fresh, "vectors")) == 2
    vectors = np.array([index.store.faiss_index.reconstruct(i) for i in range(index.store.faiss_index.ntotal)])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    fresh.collection.sync(fresh.documents)
    assert files_of(fresh, "vectors") == [article_vectors]


def test_documents_must_exist_and_have_distinct_ids(settings):
    note = Document(id="note", title="note", text="Une note.")
    with pytest.raises(ValueError, match="no documents"):
        Pipeline(settings, [])
    with pytest.raises(ValueError, match="'note'"):
        Pipeline(settings, [note, replace(note, text="Une autre note.")])


def test_an_unwritable_index_folder_costs_only_the_saving(pipeline, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    other = pipeline.for_documents(pipeline.documents, blocker / "index")
    with caplog.at_level(logging.WARNING):
        answer = other.run("Qui a fondé Mistral ?")
    assert "Could not save the index" in caplog.text and "RAG_INDEX_DIR" in caplog.text
    assert answer.sources and not (blocker / "index").exists()
    assert not other.retriever.index.saved
