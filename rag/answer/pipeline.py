"""The question-answering pipeline: retrieve passages, read them, return the
exact span of the document that answers, or an empty answer when the
documents do not say.

    from rag import ask
    answer = ask("Who founded Mistral?")
    answer.text, answer.score, answer.start, answer.end, answer.sources
"""
from __future__ import annotations

import hashlib
import logging
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.answer.language import detect_language
from rag.answer.wording import words_for
from rag.chunking import DocumentSplitter
from rag.documents import Document, check_documents, default_documents, safe_id
from rag.embedding import Embedder
from rag.embedding.onnx_embedder import OnnxEmbedder
from rag.embedding.weights import share_word_embeddings
from rag.index import (DEFAULT_COLLECTION, AddReport, Collection, FileStore, PassageIndex, StorageError,
                       collection_folder)
from rag.index.collection import Progress
from rag.reader import ExtractiveReader, builtin_exports, make_onnx_reader, make_reader
from rag.retrieval import HybridRetriever
from rag.settings import READER_MIN_CONFIDENCE, Settings
from rag.verifier import (CombinedConfidence, Verifier, builtin_alternates_below, builtin_confidence,
                          builtin_refusal_bar, make_onnx_verifier, make_verifier, read_again)

log = logging.getLogger(__name__)

@dataclass
class Source:
    """A passage the reader read, located in its document."""

    text: str
    doc_id: str
    start: int
    end: int
    score: float
    title: str = ""
    page: int | None = None  # the page (from 1) where the passage starts, for paged documents


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
    title: str | None = None  # the answer's document
    page: int | None = None  # and its page, for paged documents (PDF)
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


def collection_name_for(documents: list[Document]) -> str:
    """The collection that holds exactly the given documents: named after the
    document, or after the set when there are several."""
    if len(documents) == 1:
        return safe_id(documents[0].id)[:64].strip(".-_") or "document"
    digest = hashlib.sha256("\0".join(sorted(d.id for d in documents)).encode()).hexdigest()[:10]
    return f"documents-{digest}"


class Pipeline:
    """Documents → chunks → index → hybrid retrieval → extractive reader.

    The constructor stores settings; :meth:`warm_up` loads models and the
    collection's index (building or repairing it when needed); :meth:`run`
    answers; :meth:`add` and :meth:`remove` change the collection. It answers
    from the collection ``settings.collection`` (the embedded article's
    ``default`` one unless set), or, when ``documents`` are given, from
    exactly those, in a collection of their own. Safe to share between threads.
    """

    def __init__(self, settings: Settings | None = None, documents: list[Document] | None = None) -> None:
        self.settings = settings or Settings.from_env()
        if documents is not None:
            check_documents(documents)
        self.given_documents = documents
        name = self.settings.collection if documents is None else collection_name_for(documents)
        self.splitter = DocumentSplitter(self.settings.chunk_size, self.settings.chunk_overlap)
        embedder: Embedder | OnnxEmbedder = Embedder(self.settings.embedder, self.settings.embedder_cache_dir)
        if self.settings.lean:
            embedder = OnnxEmbedder(embedder, self.settings.export_cache_dir, threads=self.settings.reader_threads or None,
                                    engine=self.settings.engine, precision=self.settings.precision,
                                    compiled_cache=self.settings.compiled_cache_dir)
        self.collection = Collection(collection_folder(self.settings.index_dir, name), self.splitter, embedder,
                                     flat_limit=self.settings.hnsw_above, store=self.settings.store,
                                     milvus_token=self.settings.milvus_token, milvus_index=self.settings.milvus_index)
        self.reader: ExtractiveReader | None = None
        self.verifier: Verifier | None = None  # the built-in reader's spans only: the confidence was fitted on them
        self.confidence: CombinedConfidence | None = None
        self.retriever: HybridRetriever | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder | OnnxEmbedder:
        """The embedder, shared with the collection (which embeds the passages it indexes)."""
        return self.collection.embedder

    @embedder.setter
    def embedder(self, embedder: Embedder | OnnxEmbedder) -> None:
        self.collection.embedder = embedder

    @property
    def documents(self) -> list[Document]:
        """The documents answered from, with their text."""
        if self.given_documents is not None:
            return self.given_documents
        return [self.collection.document(entry["id"]) for entry in self.collection.entries()]

    def document(self, doc_id: str) -> Document:
        """A document answered from, with its text; a KeyError for an id it does not hold."""
        if self.given_documents is not None:
            found = next((d for d in self.given_documents if d.id == doc_id), None)
            if found is None:
                raise KeyError(f"no document {doc_id!r}")
            return found
        return self.collection.document(doc_id)

    def page_starts(self, doc_id: str) -> list[int]:
        """Where the pages of an answered document start, from the index loaded (no file read)."""
        return self.retriever.index.page_starts(doc_id) if self.retriever is not None else []

    def load_index(self, rebuild: bool = False, progress: Progress | None = None) -> PassageIndex:
        """The collection's index: loaded when intact and up to date, else
        (re)built from the documents' stored text. A folder that cannot be
        written costs only the saving: the index is then used from memory."""
        index = None if rebuild else self.collection.load(self.given_documents)
        if index is not None:
            return index
        is_default = self.given_documents is None and self.collection.name == DEFAULT_COLLECTION
        if self.given_documents is None and not is_default and not self.collection.exists:
            return PassageIndex(FileStore([], []))  # a new collection: nothing added yet
        try:
            if self.given_documents is not None:
                self.collection.sync(self.given_documents, progress, force=rebuild)
            else:
                self.collection.repair(default_documents() if is_default else None, progress, force=rebuild)
        except StorageError as error:
            documents = self.given_documents or (default_documents() if is_default and not self.collection.exists
                                                 else self.collection.stored_documents())
            if not documents:
                raise
            log.warning("Could not save the index: %s Answering from the index in memory meanwhile.", error)
            return self.index_in_memory(documents)
        index = self.collection.load(self.given_documents)
        if index is None:
            raise RuntimeError(f"collection {self.collection.folder} could not be rebuilt (see the warnings above)")
        return index

    def index_in_memory(self, documents: list[Document]) -> PassageIndex:
        chunks = self.splitter.run(documents)
        vectors = self.embedder.embed_passages([c.text for c in chunks])
        info = {d.id: {"title": d.title, "pages": list(d.pages), "source": d.source} for d in documents}
        return PassageIndex(FileStore(chunks, [vectors]), info, saved=False)

    def warm_up(self) -> None:
        if self.retriever is not None:
            return
        with self._lock:
            if self.retriever is not None:
                return
            self._load_models()
            self.retriever = HybridRetriever(self.embedder, self.load_index(), self.settings.candidates)

    def load_models(self) -> None:
        """The embedder, the reader and the verifier, without the index (to share them with another pipeline)."""
        with self._lock:
            self._load_models()

    def load_embedder(self) -> None:
        """The embedder alone: all that adding documents needs."""
        with self._lock:
            if self.settings.lean:
                builtin_exports(self.settings)  # made on first use, before the embedder loads them
            self.embedder.warm_up()

    def reload(self) -> None:
        """Read the collection again after it changed; questions asked meanwhile use the previous index."""
        with self._lock:
            self._load_models()
            retriever = HybridRetriever(self.embedder, self.load_index(), self.settings.candidates)
        self.retriever = retriever

    def refresh(self) -> bool:
        """Read the collection again if another process (``rag add``, another chat server) changed it
        since it was loaded; True when it did. An index kept in memory only (unwritable folder) stays."""
        retriever = self.retriever
        if self.given_documents is not None or retriever is None or not retriever.index.saved:
            return False
        if retriever.index.holds(self.collection.entries()):
            return False
        log.info("Collection %s changed on disk; reading it again", self.collection.name)
        self.reload()
        return True

    def add(self, paths, progress: Progress | None = None, names: list[str] | None = None,
            max_mb: int | None = None) -> AddReport:
        """Add files or folders to the collection (see :meth:`Collection.add`) and answer from them next;
        files over ``max_mb`` (default: the ``max_document_mb`` setting) are refused."""
        if self.given_documents is not None:
            raise ValueError("this pipeline answers from the documents it was given; add files to a collection")
        self.load_embedder()
        report = self.collection.add(paths, progress, self.settings.read_limits(max_mb), names)
        if report.changed:
            self.reload()
        return report

    def remove(self, doc_ids: list[str]) -> list[str]:
        """Remove documents from the collection by id."""
        if self.given_documents is not None:
            raise ValueError("this pipeline answers from the documents it was given; remove files from a collection")
        removed = self.collection.remove(doc_ids)
        self.reload()
        return removed

    @property
    def verifies(self) -> bool:
        """Whether answers are read again by the built-in verifier (built-in models, ``verified_spans`` > 0)."""
        return self.settings.verified_spans > 0 and self.settings.builtin_models

    @property
    def min_confidence(self) -> float:
        """The refusal bar: the ``min_confidence`` setting, else the bar that goes with the confidence in use."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        return builtin_refusal_bar() if self.verifies else READER_MIN_CONFIDENCE

    @property
    def alternates_below(self) -> float:
        """The verifier reads the reader's other best spans only under this confidence of its best one."""
        return builtin_alternates_below() if self.settings.verifier_early_stop else float("inf")

    def _load_models(self) -> None:
        """The embedder, then the reader and the verifier unless already set (the caller holds the lock)."""
        if self.settings.lean:
            self._load_lean_models()
            return
        self.embedder.warm_up()
        if self.reader is not None:
            return
        builtin = self.settings.builtin_models
        # The built-in reader and verifier were made from the built-in embedder: same tokenizer, same
        # (frozen) word embeddings, kept once in memory.
        reader = make_reader(self.settings, tokenizer=self.embedder.tokenizer if builtin else None)
        reader.warm_up()
        if builtin and share_word_embeddings(self.embedder.transformer, reader.model):
            log.info("The reader shares the embedder's word embeddings")
        if self.verifies:
            verifier = make_verifier(self.settings, tokenizer=self.embedder.tokenizer)
            verifier.warm_up()
            share_word_embeddings(self.embedder.transformer, verifier.model)
            self.verifier, self.confidence = verifier, builtin_confidence()
        self.reader = reader

    def _load_lean_models(self) -> None:
        """The built-in models on an ONNX engine; they share one tokenizer and one word-embedding table."""
        if self.reader is not None:
            return
        exports = builtin_exports(self.settings)  # before the embedder loads them
        self.embedder.warm_up()
        tokenizer, table = self.embedder.tokenizer, self.embedder.word_embeddings
        reader = make_onnx_reader(self.settings, exports, tokenizer, table)
        reader.warm_up()
        if self.verifies:
            verifier = make_onnx_verifier(self.settings, exports, tokenizer, table)
            verifier.warm_up()
            self.verifier, self.confidence = verifier, builtin_confidence()
        self.reader = reader

    def for_documents(self, documents: list[Document], index_dir: Path) -> Pipeline:
        """A pipeline over other documents, with its own index, that shares
        this one's loaded models (evaluating many documents loads them once)."""
        return self._sharing_models(Pipeline(replace(self.settings, index_dir=Path(index_dir)), documents))

    def for_collection(self, name: str) -> Pipeline:
        """The pipeline of another collection of the same index folder, sharing this
        one's loaded models (a chat serves many collections with one copy of them)."""
        return self._sharing_models(Pipeline(replace(self.settings, collection=name)))

    def _sharing_models(self, other: Pipeline) -> Pipeline:
        self.load_models()
        other.embedder = self.embedder
        other.reader, other.verifier, other.confidence = self.reader, self.verifier, self.confidence
        return other

    def run(self, question: str, history: list[str] | None = None) -> Answer:
        """Answer ``question``; ``history`` holds the user's earlier questions,
        oldest first, so a follow-up is retrieved with its context."""
        question, warnings = clean_question(question, self.settings.max_question_chars)
        if history is not None and not isinstance(history, (list, tuple)):
            raise TypeError("the history must be a list of earlier questions (strings), oldest first")
        self.warm_up()
        retriever = self.retriever
        if not len(retriever.index):
            raise ValueError(words_for(detect_language(question))["empty_collection"].format(
                name=self.collection.name))
        queries = [question]
        context = self.previous_question(history or [])
        if context:
            queries.append(f"{context} {question}")
        passages = retriever.run(queries, self.settings.top_k)
        index = retriever.index
        sources = [
            Source(p.chunk.text, p.chunk.doc_id, p.chunk.start, p.chunk.end, round(p.score, 6),
                   index.title(p.chunk.doc_id), index.page(p.chunk.doc_id, p.chunk.start))
            for p in passages
        ]
        priors = [self.settings.similarity_weight * p.similarity for p in passages]
        spans = self.reader.run(question, [s.text for s in sources], top_k=max(1, self.settings.verified_spans)
                                if self.verifier else 1, passage_priors=priors)
        if spans and self.verifier is not None:
            spans = read_again(self.verifier, self.confidence, question, spans, [s.text for s in sources],
                               self.alternates_below)
        answer = Answer(question=question, text="", score=1.0, sources=sources,
                        language=detect_language(question), warnings=warnings)
        if spans:
            best = spans[0]
            if best.confidence >= self.min_confidence:
                source = sources[best.passage_index]
                answer.text = best.text
                answer.start = source.start + best.start
                answer.end = source.start + best.end
                answer.doc_id = source.doc_id
                answer.title = source.title
                answer.page = index.page(source.doc_id, answer.start)
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
