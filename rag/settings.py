"""All settings in one typed place. Each field can be overridden by a ``RAG_*``
environment variable (``RAG_TOP_K=6``) and by the matching CLI flag."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

BUILTIN = "builtin"
RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
PRECISIONS = ("auto", "bf16", "f32")  # OpenVINO's; onnxruntime computes in f32
# The reader's confidence alone is calibrated on held-out questions: answer when the span is
# more likely right than not (held-out PIAF answerable F1 0.597, README "Refusing").
READER_MIN_CONFIDENCE = 0.5


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rag-qa"


@dataclass
class Settings:
    """Pipeline settings. ``embedder``/``reader`` are ``builtin`` (the offline
    models made from packaged weights), a local model folder, or a hub id."""

    embedder: str = BUILTIN
    reader: str = BUILTIN
    index_dir: Path = Path("index")  # one folder per collection under it
    # Where passages are searched: "files" (FAISS and BM25 in this process, the default),
    # "milvus:PATH.db" (Milvus Lite, a local file, one process) or "milvus:http://HOST:19530"
    # (a Milvus server or cluster, shared by several chat servers); README, "Choosing the store".
    store: str = "files"
    milvus_token: str = ""  # a Milvus server's token ("user:password" or an API key)
    # The dense index of a Milvus collection when it is made: "FLAT" (exact) or "HNSW"
    # (approximate, for millions of passages; README, "Choosing the store").
    milvus_index: str = "FLAT"
    collection: str = "default"  # the collection answered from; "default" holds the embedded article
    cache_dir: Path = field(default_factory=_default_cache)
    chunk_size: int = 600  # characters; ~150 tokens, so question + passage fit one reader window
    chunk_overlap: int = 120
    top_k: int = 4  # passages the reader reads
    candidates: int = 10  # passages each retriever proposes before fusion
    # Answer only when the confidence (the probability that the span is right) reaches this bar.
    # None: the bar that goes with the confidence in use: READER_MIN_CONFIDENCE for the reader's
    # own, and with the verifier the highest bar that keeps held-out answerable F1 at SQuAD
    # v2.0's 0.75 and PIAF's 0.577 (rag/models/verifier/verifier.json, python -m rag.evaluation.verifier).
    min_confidence: float | None = None
    # The built-in verifier reads this many of the reader's best spans again, and the answer's
    # confidence combines its score with the reader's margin (rag/verifier/). 0, the default,
    # answers on the reader's confidence alone: on the embedded article the verifier refuses
    # right answers whose sentence does not name the question's subject (README, "Refusing").
    verified_spans: int = 0
    # OpenVINO in bf16 reads the verifier's matrix products with int8 weights and activations
    # quantized on the fly: 16 to 29 % less time for the same held-out figures (README, "Refusing").
    verifier_int8: bool = True
    # The verifier reads the reader's other best spans only when its best span's combined confidence
    # is under the held-out bar recorded with the combination (verifier.json): the same held-out
    # figures for about one reading instead of three on most answered questions (README, "Refusing").
    verifier_early_stop: bool = True
    # Ranking answers across passages: the reader's margin plus this many times the
    # question-passage cosine (chosen on held-out documents for the built-in reader).
    similarity_weight: float = 100.0
    max_answer_tokens: int = 48  # the longest span the reader may answer with
    max_question_chars: int = 500  # longer questions are cut; also the chat box's limit
    max_upload_mb: int = 10  # the chat server refuses larger uploads
    max_document_mb: int = 50  # rag add and Pipeline.add refuse larger files
    # Each file is read in a process of its own, stopped past these limits
    # (seconds, megabytes of memory), and refused past this much extracted text.
    read_timeout_s: float = 30.0
    read_memory_mb: int = 2048
    max_text_mb: int = 50
    # Above this many passages a collection is searched through an HNSW graph
    # instead of a flat scan (README, "Choosing the index").
    hnsw_above: int = 1_000_000
    # Conversations whose state (the earlier questions) the chat server keeps;
    # the least recently used goes first. Each costs memory (README, soak).
    max_sessions: int = 1000
    # Gradio's run history (a page of past calls, kept in the browser): off unless asked for.
    run_history: bool = False
    reader_threads: int = 0  # 0: the runtime's default
    # How the built-in models answer: their ONNX exports on "openvino" or "onnxruntime" (no
    # torch import: a cold answer in seconds), "auto" choosing the one measured better on this
    # CPU (rag/embedding/engine.py); "torch": through transformers, as other models do.
    runtime: str = "auto"
    # How OpenVINO multiplies: "auto" is bf16 where the CPU does it natively
    # (AVX512-BF16 or AMX), f32 elsewhere; "bf16" or "f32" to choose.
    precision: str = "auto"

    @property
    def embedder_cache_dir(self) -> Path:
        return self.cache_dir / "multilingual-e5-small"

    @property
    def reader_cache_dir(self) -> Path:
        return self.cache_dir / "reader"

    @property
    def verifier_cache_dir(self) -> Path:
        return self.cache_dir / "verifier"

    @property
    def export_cache_dir(self) -> Path:
        """The built-in models' ONNX exports, made from their definitions."""
        return self.cache_dir / "exports"

    @property
    def compiled_cache_dir(self) -> Path:
        """OpenVINO's cache of the compiled models."""
        return self.cache_dir / "openvino"

    def __post_init__(self) -> None:
        self.index_dir, self.cache_dir = Path(self.index_dir), Path(self.cache_dir)
        from rag.index.names import check_name

        check_name(self.collection)  # a plain name: never a path out of the index folder
        from rag.index.milvus_store import INDEXES, check_store

        check_store(self.store)
        if self.milvus_index not in INDEXES:
            raise ValueError(f"RAG_MILVUS_INDEX must be one of {', '.join(INDEXES)}, not {self.milvus_index!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"RAG_RUNTIME must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RAG_PRECISION must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def read_limits(self, max_mb: int | None = None):
        """What reading one file may cost (a :class:`rag.documents.ReadLimits`);
        ``max_mb`` (default: ``max_document_mb``) bounds its size on disk."""
        from rag.documents import ReadLimits

        return ReadLimits((max_mb or self.max_document_mb) * 2**20, self.max_text_mb * 2**20, self.read_timeout_s,
                          self.read_memory_mb)

    @property
    def engine(self) -> str:
        """The engine of the lean path on this CPU: ``openvino`` or ``onnxruntime``."""
        from rag.embedding.engine import choose_engine

        return choose_engine(self.runtime, self.precision)

    @property
    def builtin_models(self) -> bool:
        """Whether the embedder and the reader are the built-in ones, made from one encoder (one
        tokenizer, one word-embedding table; the verifier and its confidence were fitted on them)."""
        return self.embedder == BUILTIN and self.reader == BUILTIN

    @property
    def lean(self) -> bool:
        """Whether questions are answered on the lean path (an ONNX engine)."""
        return self.runtime != "torch" and self.builtin_models

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ``RAG_<FIELD>`` variables, then explicit overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get("RAG_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(kind: str, raw: str, name: str):
    kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind == "Path":
            return Path(raw).expanduser()
        return raw
    except ValueError:
        raise ValueError(f"RAG_{name.upper()}={raw!r} is not a valid {kind}") from None
