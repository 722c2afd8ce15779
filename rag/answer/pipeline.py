"""The question-answering pipeline: retrieve passages, read them, return the
exact span of the document that answers, or an empty answer when the
documents do not say.

    from rag import ask
    answer = ask("Who founded Mistral?")
    answer.text, answer.score, answer.start, answer.end, answer.sources
"""
from __future__ import annotations

import logging
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.answer.language import detect_language
from rag.answer.wording import words_for
from rag.chunking import DocumentSplitter
from rag.documents import Document, check_documents, default_documents
from rag.embedding import Embedder
from rag.embedding.onnx_embedder import OnnxEmbedder
from rag.embedding.weights import share_word_embeddings
from rag.index import IndexStore, PassageIndex
from rag.reader import ExtractiveReader, builtin_exports, make_onnx_reader, make_reader
from rag.retrieval import HybridRetriever
from rag.settings import BUILTIN, Settings

log = logging.getLogger(__name__)

@dataclass
class Source:
    """A passage the reader read, located in its document."""

    text: str
    doc_id: str
    start: int
    end: int
    score: float


@dataclass
class Answer:
    """The answer span (``text == document.text[start:end]``), or ``text == ""``
    when the documents do not say. ``score`` is the calibrated confidence in
    what is returned: that the span is right, or, for an empty answer, that
    the documents do not say. ``sources`` are the passages read, best first;
    ``source_index`` points at the one holding the span."""

    question: str
    text: str
    score: float
    start: int | None = None
    end: int | None = None
    doc_id: str | None = None
    sources: list[Source] = field(default_factory=list)
    source_index: int | None = None
    language: str = "en"
    warnings: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return bool(self.text)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def clean_question(question: str, max_chars: int) -> tuple[str, list[str]]:
    """Reject empty questions; drop control characters; cut overlong ones."""
    if not isinstance(question, str):
        raise TypeError("the question must be a string")
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cs", "Cn") or ch in "\u2028\u2029" else ch
        for ch in question
    )
    cleaned = " ".join(cleaned.split())
    words = words_for(detect_language(question))
    if not cleaned:
        raise ValueError(words["empty"])
    warnings = []
    if len(cleaned) > max_chars:
        cleaned = cleaned[:max_chars].rsplit(" ", 1)[0] or cleaned[:max_chars]
        warnings.append(words["cut"].format(max_chars=max_chars))
        log.warning("question longer than %d characters was cut", max_chars)
    return cleaned, warnings


class Pipeline:
    """Documents → chunks → index → hybrid retrieval → extractive reader.

    The constructor stores settings; :meth:`warm_up` loads models and the
    index (building or rebuilding it when needed); :meth:`run` answers.
    Safe to share between threads.
    """

    def __init__(self, settings: Settings | None = None, documents: list[Document] | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.documents = documents if documents is not None else default_documents()
        check_documents(self.documents)
        self.splitter = DocumentSplitter(self.settings.chunk_size, self.settings.chunk_overlap)
        self.embedder: Embedder | OnnxEmbedder = Embedder(self.settings.embedder, self.settings.embedder_cache_dir)
        if self.settings.lean:
            self.embedder = OnnxEmbedder(self.embedder, self.settings.onnx_cache_dir,
                                         threads=self.settings.reader_threads or None)
        self.store = IndexStore(self.settings.index_dir)
        self.reader: ExtractiveReader | None = None
        self.retriever: HybridRetriever | None = None
        self._lock = threading.Lock()

    def index_key(self) -> dict:
        """What the index depends on; a stored index built from anything else is rebuilt."""
        return {
            "embedder": self.embedder.identity,
            "chunking": self.splitter.settings,
            "documents": sorted(d.sha256 for d in self.documents),
        }

    def build_index(self) -> PassageIndex:
        chunks = self.splitter.run(self.documents)
        vectors = self.embedder.embed_passages([c.text for c in chunks])
        return self.store.save(chunks, vectors, self.index_key())

    def load_index(self, rebuild: bool = False) -> PassageIndex:
        index = None if rebuild else self.store.load(self.index_key())
        if index is None:
            index = self.build_index()
        return index

    def warm_up(self) -> None:
        if self.retriever is not None:
            return
        with self._lock:
            if self.retriever is not None:
                return
            self._load_models()
            self.retriever = HybridRetriever(self.embedder, self.load_index(), self.settings.candidates)

    def _load_models(self) -> None:
        """The embedder, then the reader unless one is already set (the caller holds the lock)."""
        if self.settings.lean:
            self._load_lean_models()
            return
        self.embedder.warm_up()
        if self.reader is not None:
            return
        builtin = self.settings.reader == BUILTIN and self.settings.embedder == BUILTIN
        # The built-in reader was made from the built-in embedder: same tokenizer, same (frozen) embeddings.
        reader = make_reader(self.settings, tokenizer=self.embedder.tokenizer if builtin else None)
        reader.warm_up()
        if builtin and share_word_embeddings(self.embedder.transformer, reader.model):
            log.info("The reader shares the embedder's word embeddings")
        self.reader = reader

    def _load_lean_models(self) -> None:
        """The built-in models on onnxruntime; they share one tokenizer and one word-embedding table."""
        if self.reader is not None:
            return
        exports = builtin_exports(self.settings)  # before the embedder loads them
        self.embedder.warm_up()
        reader = make_onnx_reader(self.settings, exports, self.embedder.tokenizer, self.embedder.word_embeddings)
        reader.warm_up()
        self.reader = reader

    def for_documents(self, documents: list[Document], index_dir: Path) -> Pipeline:
        """A pipeline over other documents, with its own index, that shares
        this one's loaded models (evaluating many documents loads them once)."""
        with self._lock:
            self._load_models()
        other = Pipeline(replace(self.settings, index_dir=index_dir), documents)
        other.embedder = self.embedder
        other.reader = self.reader
        return other

    def run(self, question: str, history: list[str] | None = None) -> Answer:
        """Answer ``question``; ``history`` holds the user's earlier questions,
        oldest first, so a follow-up is retrieved with its context."""
        question, warnings = clean_question(question, self.settings.max_question_chars)
        if history is not None and not isinstance(history, (list, tuple)):
            raise TypeError("the history must be a list of earlier questions (strings), oldest first")
        self.warm_up()
        queries = [question]
        context = self.previous_question(history or [])
        if context:
            queries.append(f"{context} {question}")
        passages = self.retriever.run(queries, self.settings.top_k)
        sources = [
            Source(p.chunk.text, p.chunk.doc_id, p.chunk.start, p.chunk.end, round(p.score, 6)) for p in passages
        ]
        priors = [self.settings.similarity_weight * p.similarity for p in passages]
        spans = self.reader.run(question, [s.text for s in sources], top_k=1, passage_priors=priors)
        answer = Answer(question=question, text="", score=1.0, sources=sources,
                        language=detect_language(question), warnings=warnings)
        if spans:
            best = spans[0]
            if best.confidence >= self.settings.min_confidence:
                source = sources[best.passage_index]
                answer.text = best.text
                answer.start = source.start + best.start
                answer.end = source.start + best.end
                answer.doc_id = source.doc_id
                answer.source_index = best.passage_index
                answer.score = round(best.confidence, 4)
            else:
                answer.score = round(1.0 - best.confidence, 4)
        return answer

    def previous_question(self, history: list[str]) -> str | None:
        """The latest earlier question that is still a question once cleaned
        (entries that are not text, or only blanks and control characters, are skipped)."""
        for earlier in reversed(history):
            if isinstance(earlier, str):
                try:
                    return clean_question(earlier, self.settings.max_question_chars)[0]
                except ValueError:
                    continue
        return None

    def document(self, doc_id: str) -> Document:
        return next(d for d in self.documents if d.id == doc_id)


_default: Pipeline | None = None
_default_lock = threading.Lock()


def default_pipeline() -> Pipeline:
    """The process-wide pipeline behind :func:`ask`, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Pipeline()
    return _default


def ask(question: str, history: list[str] | None = None) -> Answer:
    """Answer a question about the documents (the embedded article by default)."""
    return default_pipeline().run(question, history)
