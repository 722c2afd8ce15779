"""Reader: extractive question answering over passages."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from rag.reader.reader import Calibration, ExtractiveReader, Span
from rag.settings import BUILTIN, Settings

BUILTIN_READER = resources.files("rag.models").joinpath("reader")


def builtin_reader_path(cache_dir: Path, embedder_cache_dir: Path, deep: bool = False) -> Path:
    """The built-in reader, assembled in the cache from the packaged weights
    and the word embeddings of the built-in embedder (materialized if needed);
    ``deep`` checks the cached weights by hash rather than by size."""
    from rag.embedding.materialize import materialize_embedder
    from rag.reader.assemble import assemble_model

    embedder = materialize_embedder(embedder_cache_dir, deep=deep)
    return assemble_model(Path(str(BUILTIN_READER)), embedder, cache_dir, deep)


def builtin_exports(settings: Settings, deep: bool = False) -> Path:
    """The ONNX exports of the built-in embedder, reader and verifier, made
    from the materialized models when missing (torch is imported only then)."""
    from rag.embedding.onnx_export import export_models
    from rag.verifier import builtin_verifier_path

    reader = builtin_reader_path(settings.reader_cache_dir, settings.embedder_cache_dir, deep=deep)
    verifier = builtin_verifier_path(settings.verifier_cache_dir, settings.embedder_cache_dir, deep=deep)
    return export_models(settings.embedder_cache_dir, reader, verifier, settings.export_cache_dir, deep=deep)


def builtin_reader_calibration() -> Calibration:
    """The confidence calibration fitted on held-out data after training."""
    return Calibration(**json.loads(BUILTIN_READER.joinpath("reader.json").read_text())["calibration"])


def make_onnx_reader(settings: Settings, exports: Path, tokenizer=None, word_embeddings=None):
    """The built-in reader on the settings' ONNX engine, from ``exports`` (see :func:`builtin_exports`)."""
    import numpy as np

    from rag.embedding.onnx_embedder import load_tokenizer
    from rag.embedding.onnx_export import WORD_EMBEDDINGS
    from rag.reader.onnx_reader import OnnxReader

    if word_embeddings is None:
        word_embeddings = np.load(exports / WORD_EMBEDDINGS, mmap_mode="r")
    return OnnxReader(exports, tokenizer or load_tokenizer(settings.embedder_cache_dir), word_embeddings,
                      builtin_reader_calibration(), settings.reader_threads or None, settings.max_answer_tokens,
                      settings.engine, settings.precision, settings.compiled_cache_dir)


def make_reader(settings: Settings, tokenizer=None, word_embeddings=None) -> ExtractiveReader:
    """The reader the settings name: the built-in one (assembled, calibrated;
    on an ONNX engine unless the runtime is torch) or any extractive QA folder or
    hub id (SQuAD 2.0's margin > 0 rule). ``tokenizer`` and, on an ONNX engine,
    ``word_embeddings`` may be the embedder's, which the built-in reader shares."""
    if settings.lean:
        return make_onnx_reader(settings, builtin_exports(settings), tokenizer, word_embeddings)
    threads = settings.reader_threads or None
    if settings.reader != BUILTIN:
        return ExtractiveReader(settings.reader, threads=threads, tokenizer=tokenizer,
                                max_answer_tokens=settings.max_answer_tokens)
    path = builtin_reader_path(settings.reader_cache_dir, settings.embedder_cache_dir)
    return ExtractiveReader(str(path), threads=threads, calibration=builtin_reader_calibration(), tokenizer=tokenizer,
                            max_answer_tokens=settings.max_answer_tokens)


__all__ = [
    "Calibration", "ExtractiveReader", "Span", "builtin_exports", "builtin_reader_calibration", "builtin_reader_path",
    "make_onnx_reader", "make_reader",
]
