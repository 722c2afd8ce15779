"""The ``rag`` command, run as a user would run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def rag(*args: str, index_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-index")


def test_ask_json(index_dir):
    result = rag("ask", "--json", "Quel robot conversationnel Mistral a-t-elle dévoilé ?", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert {"text", "score", "start", "end", "doc_id", "sources"} <= answer.keys()
    assert answer["sources"] and all({"text", "doc_id", "start", "end", "score"} <= s.keys() for s in answer["sources"])


def test_ask_marks_the_span_in_its_passage(index_dir):
    result = rag("ask", "Who founded Mistral AI?", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    assert "confidence" in result.stdout or "do not say" in result.stdout


def test_empty_question_is_a_clear_error(index_dir):
    result = rag("ask", "  ", index_dir=index_dir)
    assert result.returncode == 2
    assert "empty" in result.stderr and "Traceback" not in result.stderr


def test_index_rebuild_and_eval(index_dir, tmp_path):
    assert rag("index", "--rebuild", index_dir=index_dir).returncode == 0
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "a", "lang": "fr", "question": "Où la jeune pousse est-elle établie ?",
                                     "answers": ["Paris"], "answerable": True}) + "\n")
    result = rag("eval", str(questions), "--json", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]["fr"]
    assert summary["answerable"] == 1 and "recall@4" in summary and 0 <= summary["f1"] <= 1


def test_eval_squad_on_a_small_file(index_dir, tmp_path):
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "La tour Eiffel est à Paris depuis 1889.", "qas": [
        {"id": "1", "question": "Où est la tour Eiffel ?", "answers": [{"text": "Paris", "answer_start": 21}]},
        {"id": "2", "question": "Qui a peint la Joconde ?", "answers": [], "is_impossible": True},
    ]}]}]}
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(squad))
    result = rag("eval-squad", str(path), "--json", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["n"] == 2 and {"em", "f1", "no_answer_accuracy"} <= scores.keys()
    assert 0 <= scores["em"] <= scores["f1"] <= 1


def test_eval_squad_reads_each_article_as_a_document(index_dir, tmp_path):
    def article(title, paragraphs):
        return {"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}

    squad = {"data": [
        article("Eiffel", [
            ("La tour Eiffel a été construite pour l'Exposition universelle de 1889.", [
                {"id": "e1", "question": "Pour quel événement la tour a-t-elle été construite ?",
                 "answers": [{"text": "l'Exposition universelle de 1889", "answer_start": 37}]}]),
            ("Elle mesure environ 330 mètres et se trouve sur le Champ-de-Mars à Paris.", [
                {"id": "e2", "question": "Où se trouve la tour ?", "answers": [{"text": "Paris", "answer_start": 67}]},
                {"id": "e3", "question": "Qui a peint la Joconde ?", "answers": [], "is_impossible": True}]),
        ]),
        article("Loire", [("La Loire est le plus long fleuve de France.", [
            {"id": "l1", "question": "Quel est le plus long fleuve de France ?",
             "answers": [{"text": "La Loire", "answer_start": 0}]}])]),
    ]}
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(squad, ensure_ascii=False))
    untouched = tmp_path / "index"
    result = rag("eval-squad", str(path), "--documents", "--json", index_dir=untouched)
    assert result.returncode == 0, result.stderr
    assert not untouched.exists()  # the articles get their own indexes; the user's index is left alone
    scores = json.loads(result.stdout)
    assert scores["documents"] == 2 and scores["answerable"] == 3 and scores["unanswerable"] == 1
    assert scores["recall@4"] == 1.0 and 0 <= scores["em"] <= scores["f1"] <= 1
    shared = json.loads(rag("eval-squad", str(path), "--documents", "--one-collection", "--json",
                            index_dir=untouched).stdout)
    assert shared["documents"] == 2 and shared["collections"] == 1 and shared["document_recall@4"] == 1.0
    assert not untouched.exists()

    english = {"data": [article("Eiffel", [("", [{"id": "e2", "question": "Where is the tower?", "answers": []}])])]}
    questions = tmp_path / "english.json"
    questions.write_text(json.dumps(english))
    result = rag("eval-squad", str(path), "--documents", "--held-out", "--questions-from", str(questions), "--json",
                 index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)  # only the first article is held out, and only e2 has an English question
    assert scores["documents"] == 1 and scores["answerable"] == 1 and "unanswerable" not in scores


def test_bad_setting_is_reported(index_dir):
    env_result = subprocess.run([sys.executable, "-m", "rag.cli", "ask", "x"], capture_output=True, text=True,
                                env={**os.environ, "RAG_TOP_K": "many"}, timeout=120)
    assert env_result.returncode == 2 and "RAG_TOP_K" in env_result.stderr


def test_two_documents_with_one_name_are_refused(index_dir, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text(f"Note {folder}.", encoding="utf-8")
    result = rag("--document", str(tmp_path / "a" / "notes.txt"), "--document", str(tmp_path / "b" / "notes.txt"),
                 "ask", "Quoi ?", index_dir=index_dir)
    assert result.returncode == 2
    assert "'notes.txt'" in result.stderr and "Traceback" not in result.stderr


def test_index_reports_a_folder_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = rag("index", index_dir=blocker / "index")
    assert result.returncode == 1
    assert "could not be saved" in result.stderr and "Traceback" not in result.stderr


def test_cold_ask_is_timed_to_its_answer_and_to_its_exit(index_dir):
    from rag.evaluation.bench import cold_ask

    rag("index", index_dir=index_dir)
    for runtime in ("openvino", "onnxruntime", "torch"):
        timing = cold_ask("Qui a fondé Mistral ?", runtime, index_dir)
        assert timing["to_exit_s"] >= timing["to_answer_s"] > 0 and timing["peak_rss_mb"] > 0


def test_python_dash_m_rag_and_options_after_the_command(index_dir, tmp_path):
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    module = subprocess.run([sys.executable, "-m", "rag", "ask", "Qui a fondé Mistral ?"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert module.returncode == 0, module.stderr
    note = tmp_path / "note.txt"
    note.write_text("La réunion aura lieu à Lyon le 3 mars.", encoding="utf-8")
    after = rag("ask", "Où aura lieu la réunion ?", "--document", str(note), "--json", "--top-k", "1",
                index_dir=tmp_path / "index")
    assert after.returncode == 0, after.stderr
    answer = json.loads(after.stdout)
    assert answer["doc_id"] == "note.txt" and len(answer["sources"]) == 1
    before = rag("--top-k", "1", "--document", str(note), "ask", "Où aura lieu la réunion ?", "--json",
                 index_dir=tmp_path / "index")
    assert json.loads(before.stdout) == answer  # an option left out after the command keeps the one before it


def test_ask_speaks_the_question_language(index_dir):
    french = rag("ask", "Où la jeune pousse est-elle établie ?", index_dir=index_dir)
    english = rag("ask", "Where is the startup located?", index_dir=index_dir)
    assert french.returncode == english.returncode == 0
    assert "confiance :" in french.stdout and "Passage source" in french.stdout and "caractères" in french.stdout
    assert "confidence:" in english.stdout and "Source passage" in english.stdout
    assert "Quoted as written in the French document." in english.stdout
    refused = rag("--min-confidence", "1.01", "ask", "Où la jeune pousse est-elle établie ?", index_dir=index_dir)
    assert refused.stdout.strip() == "Le document ne le dit pas."


def test_a_folder_or_a_missing_file_as_document_is_a_clear_error(index_dir, tmp_path):
    for path, message in ((tmp_path, "is a folder"), (tmp_path / "missing.txt", "does not exist")):
        result = rag("ask", "Quoi ?", "--document", str(path), index_dir=index_dir)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


def test_soak_samples_the_chat_servers_memory(index_dir):
    result = rag("soak", "--questions", "4", "--every", "2", "--per-session", "2", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["questions"] for s in report["samples"]] == [0, 2, 4]
    assert all(s["rss_mb"] > 0 for s in report["samples"]) and report["sessions"] == 2


def test_indexing_and_index_type_benchmarks_run(index_dir, tmp_path):
    """`rag bench-index` (corpus made from SQuAD paragraphs, added, then
    questions timed on it), `rag bench-embed` and `rag bench-ann` report what the README quotes."""
    paragraphs = [f"Le paragraphe {i} décrit la ville de Ville{i} et ses {i * 3} habitants." for i in range(40)]
    squad = {"data": [{"title": "t", "paragraphs": [{"context": p, "qas": []} for p in paragraphs]}]}
    source = tmp_path / "squad.json"
    source.write_text(json.dumps(squad, ensure_ascii=False))
    result = rag("bench-index", "--from-squad", str(source), "--mb", "0.01", "--rounds", "1", index_dir=index_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unique_paragraphs"] == 40 and report["passages"] > 1 and report["index"] == "IndexFlatIP"
    assert report["passages_per_s"] > 0 and report["add_peak_rss_mb"] > 0 and report["query_ms_p50"] > 0
    embedding = rag("bench-embed", "--passages", "4", index_dir=index_dir)
    assert embedding.returncode == 0, embedding.stderr
    report = json.loads(embedding.stdout)
    assert report["passages"] == 4 and report["variants"][0]["variant"].startswith("sentence-transformers")
    assert all(row["passages_per_s"] > 0 for row in report["variants"])
    assert all(row["min_cosine"] > 0.999 for row in report["variants"][1:])
    rows = [json.loads(line) for line in rag("bench-ann", "--sizes", "3000", index_dir=index_dir).stdout.splitlines()]
    assert {row["index"].split()[0] for row in rows} == {"flat", "hnsw32", "ivf219"}
    assert all(0 <= row["recall@10"] <= 1 for row in rows) and rows[0]["recall@10"] == 1.0
