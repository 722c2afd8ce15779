"""The lean query path (an ONNX engine and tokenizers) against the models'
own definitions (sentence-transformers, transformers), on the real models:
both engines in f32, which every CPU runs, and the engine and precision this
CPU gets by default."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from test_embedding import TEXTS

from rag import Settings
from rag.embedding.engine import cpu_flags, inference_precision
from rag.embedding.onnx_embedder import OnnxEmbedder
from rag.embedding.onnx_export import MANIFEST, READER, VERIFIER, export_identity, exports_verified
from rag.evaluation.qa import load_questions
from rag.reader import make_onnx_reader
from rag.reader.onnx_reader import OnnxReader


def test_the_lean_path_is_the_default(pipeline):
    assert pipeline.settings.lean
    assert isinstance(pipeline.embedder, OnnxEmbedder) and isinstance(pipeline.reader, OnnxReader)
    assert pipeline.reader.tokenizer is pipeline.embedder.tokenizer  # one tokenizer, one embedding table
    assert pipeline.reader.word_embeddings is pipeline.embedder.word_embeddings


def test_named_models_and_the_torch_runtime_take_the_transformers_path(tmp_path):
    assert not Settings.from_env({}, runtime="torch").lean
    assert not Settings.from_env({}, reader=str(tmp_path)).lean
    assert not Settings.from_env({"RAG_EMBEDDER": "intfloat/multilingual-e5-small"}).lean
    for runtime in ("tensorflow", "onnx"):
        with pytest.raises(ValueError, match="RAG_RUNTIME"):
            Settings.from_env({"RAG_RUNTIME": runtime})
    with pytest.raises(ValueError, match="RAG_PRECISION"):
        Settings.from_env({"RAG_PRECISION": "fp8"})


def test_the_engine_and_precision_follow_the_cpu(pipeline):
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert inference_precision("auto") == ("bf16" if native else "f32")
    assert inference_precision("f32") == "f32" and inference_precision("bf16") == "bf16"
    assert Settings.from_env({}).engine == ("openvino" if native else "onnxruntime")
    assert Settings.from_env({}, precision="bf16").engine == "openvino"  # only OpenVINO computes in bf16
    assert Settings.from_env({"RAG_RUNTIME": "onnxruntime"}).engine == "onnxruntime"
    assert Settings.from_env({"RAG_RUNTIME": "openvino"}).engine == "openvino"
    assert pipeline.reader.engine == pipeline.embedder.engine == pipeline.settings.engine
    assert pipeline.reader._model.precision == pipeline.embedder._session.precision == (
        inference_precision("auto") if pipeline.settings.engine == "openvino" else "f32")


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def engine(request, pipeline):
    """The lean path's embedder and reader on one engine, in f32."""
    settings = replace(pipeline.settings, runtime=request.param, precision="f32")
    embedder = OnnxEmbedder(pipeline.embedder.definition, settings.export_cache_dir, pipeline.embedder.tokenizer,
                            engine=settings.engine, precision="f32", compiled_cache=settings.compiled_cache_dir)
    reader = make_onnx_reader(settings, settings.export_cache_dir, pipeline.embedder.tokenizer,
                              pipeline.embedder.word_embeddings)
    return embedder, reader


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_each_engine_in_f32_answers_the_readme_example(pipeline, runtime):
    """What a CPU without bfloat16 can run, on any CPU: the README's example, answered."""
    pipeline.load_index()
    env = {**os.environ, "RAG_INDEX_DIR": str(pipeline.settings.index_dir), "RAG_PRECISION": "f32",
           "RAG_RUNTIME": runtime}
    result = subprocess.run([sys.executable, "-m", "rag", "ask", "Qui a fondé Mistral ?", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "Arthur Mensch" in answer["text"] and answer["score"] >= pipeline.min_confidence
    if runtime == "openvino":
        assert any(pipeline.settings.compiled_cache_dir.glob("*.blob"))  # compiled once, loaded after


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_vectors_equal_sentence_transformers(engine, torch_pipeline, kind):
    lean, definition = engine[0], torch_pipeline.embedder
    if kind == "query":
        ours, theirs = lean.embed_queries(TEXTS), definition.embed_queries(TEXTS)
    else:  # the same graph with the passage prompt, though passages are indexed by sentence-transformers
        ours, theirs = lean._encode(TEXTS, "passage: "), definition.embed_passages(TEXTS)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5)))


def test_reader_spans_equal_the_transformers_reader(pipeline, torch_pipeline, engine):
    """Same windows, same decoding; in f32 the logits of the export equal the
    model's (the transformers path multiplies in bfloat16 where the CPU can)."""
    reference = torch_pipeline.reader
    reference.bf16 = False
    f32 = engine[1]
    try:
        for item in load_questions("extra_qa.jsonl"):
            passages = [p.chunk.text for p in pipeline.retriever.run([item.question], pipeline.settings.top_k)]
            ours = f32.run(item.question, passages, top_k=3)
            theirs = reference.run(item.question, passages, top_k=3)
            assert [(s.passage_index, s.start, s.end) for s in ours] == \
                [(s.passage_index, s.start, s.end) for s in theirs], item.question
            assert [s.margin for s in ours] == pytest.approx([s.margin for s in theirs], abs=1e-3)
    finally:
        reference.bf16 = True


def test_a_cold_answer_imports_neither_torch_nor_transformers(pipeline):
    pipeline.load_index()  # the index is there, as after rag setup
    script = ("import sys; from rag import ask; answer = ask('Qui a fondé Mistral ?'); "
              "print(answer.text); print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') "
              "if m in sys.modules))")
    env = {**os.environ, "RAG_INDEX_DIR": str(pipeline.settings.index_dir)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    text, imported = result.stdout.strip().splitlines()
    assert text == pipeline.run("Qui a fondé Mistral ?").text
    assert imported == "[]"


def test_damaged_exports_are_detected(pipeline, tmp_path):
    settings = pipeline.settings
    folder = shutil.copytree(settings.export_cache_dir, tmp_path / "exports")
    expected = export_identity(settings.embedder_cache_dir, settings.reader_cache_dir, settings.verifier_cache_dir)
    assert exports_verified(folder, expected, deep=True)
    assert not exports_verified(folder, {**expected, "reader_sha256": "another reader"})
    with open(folder / READER, "r+b") as model:
        model.seek(1000)
        model.write(b"\0" * 64)
    assert exports_verified(folder, expected, deep=False)  # same size: only the hash can tell
    assert not exports_verified(folder, expected, deep=True)
    with open(folder / READER, "ab") as model:
        model.write(b"\0")
    assert not exports_verified(folder, expected, deep=False)
    (folder / MANIFEST).write_text(json.dumps([]))
    assert not exports_verified(folder, expected)


def test_bf16_compiles_an_fp16_copy_made_once_and_replaced_with_the_export(pipeline, tmp_path):
    """The copy that keeps the compiled model about 100 MB smaller: made on first use, reused after,
    made again for a new export, and a damaged copy never stops the model from loading."""
    from rag.embedding.engine import OpenVinoGraph

    export = shutil.copy(pipeline.settings.export_cache_dir / READER, tmp_path / READER)
    cache = tmp_path / "compiled"
    table = pipeline.embedder.word_embeddings
    feeds = {"inputs_embeds": table[[[0, 1000, 2000, 2]]].astype(np.float32),
             "attention_mask": np.ones((1, 4), dtype=np.int64)}
    reference = OpenVinoGraph(export, "f32").run(feeds)

    def copies() -> list:
        return sorted(cache.glob("reader-*/model.xml"))

    first = OpenVinoGraph(export, "bf16", cache_dir=cache).run(feeds)
    (made,) = copies()
    stamp = made.stat().st_mtime_ns
    OpenVinoGraph(export, "bf16", cache_dir=cache)
    assert copies() == [made] and made.stat().st_mtime_ns == stamp  # reused, not made again
    for logits, expected in zip(first, reference):
        assert np.abs(logits - expected).max() < 0.5  # bf16 against f32: close, not equal

    os.utime(export, ns=(stamp, stamp + 10**9))  # a new export
    OpenVinoGraph(export, "bf16", cache_dir=cache)
    (again,) = copies()
    assert again != made

    again.with_suffix(".bin").write_bytes(b"\0" * 100)  # damaged, and no compiled model to load instead
    for blob in cache.glob("*.blob"):
        blob.unlink()
    for logits, expected in zip(OpenVinoGraph(export, "bf16", cache_dir=cache).run(feeds), first):
        assert np.abs(logits - expected).max() < 0.5
    assert not again.exists()  # removed, made afresh next time
    assert OpenVinoGraph(export, "f32", cache_dir=cache) and not copies()  # f32 reads the export's own weights


def test_int8_weights_make_a_copy_of_their_own_that_scores_as_the_export(pipeline, tmp_path):
    """The verifier's int8 copy: beside the fp16 one (neither removes the other), about half its
    weights' size, no int8 graph left behind, and logits close to those of its fp16 weights."""
    from rag.embedding.engine import INT8_COPY, OpenVinoGraph

    export = shutil.copy(pipeline.settings.export_cache_dir / VERIFIER, tmp_path / VERIFIER)
    cache = tmp_path / "compiled"
    ids = [[0, 1000, 2000, 3000, 4000, 5000, 2, 6000, 7000, 8000, 2], [0, 1000, 2000, 2, 6000, 2, 1, 1, 1, 1, 1]]
    feeds = {"inputs_embeds": pipeline.embedder.word_embeddings[ids].astype(np.float32),
             "attention_mask": (np.array(ids) != 1).astype(np.int64)}
    fp16_graph, int8_graph = (OpenVinoGraph(export, "bf16", cache_dir=cache, int8_weights=int8)
                              for int8 in (False, True))
    assert (fp16_graph.reading, int8_graph.reading) == ("openvino-bf16", "openvino-bf16-int8")
    (fp16,), (int8,) = fp16_graph.run(feeds), int8_graph.run(feeds)
    (copy,) = cache.glob(f"verifier.int8-*/{INT8_COPY}")
    (fp16_copy,) = cache.glob("verifier-*/model.xml")
    assert copy.with_suffix(".bin").stat().st_size < 0.6 * fp16_copy.with_suffix(".bin").stat().st_size
    assert not list(cache.rglob("*.onnx"))
    assert np.abs(int8 - fp16).max() < 0.5


def test_without_a_writable_cache_the_export_is_read_as_it_is_and_says_so(pipeline, tmp_path, caplog):
    """No copy can be made: the export's own weights are read, and the reading (which names
    cached results) does not claim int8."""
    from rag.embedding.engine import OpenVinoGraph

    (tmp_path / "a-file").write_text("")
    with caplog.at_level("WARNING", logger="rag"):
        graph = OpenVinoGraph(pipeline.settings.export_cache_dir / VERIFIER, "bf16",
                              cache_dir=tmp_path / "a-file" / "cache", int8_weights=True)
    assert graph.reading == "openvino-bf16" and "Compiled models are not cached" in caplog.text


def test_processes_making_the_compact_copy_at_once_keep_one(pipeline, tmp_path):
    """Two chat servers starting together on a new export: each gets a copy that loads, one stays."""
    from concurrent.futures import ThreadPoolExecutor

    from rag.embedding.engine import compact_copy

    export = shutil.copy(pipeline.settings.export_cache_dir / READER, tmp_path / READER)
    cache = tmp_path / "compiled"
    cache.mkdir()
    with ThreadPoolExecutor(3) as pool:
        made = list(pool.map(lambda _: compact_copy(export, cache), range(3)))
    (kept,) = cache.glob("reader-*/model.xml")
    assert made == [kept] * 3 and kept.with_suffix(".bin").is_file()
    assert not list(cache.glob(".reader-*"))  # no staging folder left behind
