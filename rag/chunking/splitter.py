"""Split documents into passages with ``langchain-text-splitters``, keeping
each passage's character offsets in its document."""
from __future__ import annotations

from rag.documents import Chunk, Document

# Paragraphs, lines, then sentence ends. A sentence ends after . ! ? … or a
# closing quote, and not after a title or an initial ("M. Mensch", "J. Doe").
SENTENCE_END = (
    r"(?<=[.!?…»\"”])(?<!\bM\.)(?<!\bMM\.)(?<!\bMme\.)(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)"
    r"(?<!\b[A-Z]\.)\s+"
)
SEPARATORS = [r"\n\s*\n", r"\n", SENTENCE_END, r"(?<=[;:,])\s+", r"\s+", ""]


class DocumentSplitter:
    """Sentence-aware recursive splitting into ``chunk_size``-character passages."""

    def __init__(self, chunk_size: int = 600, chunk_overlap: int = 120) -> None:
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError("chunk_overlap must be at least 0 and smaller than chunk_size")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap

    @property
    def settings(self) -> dict:
        return {"splitter": "recursive-sentence-v1", "chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap}

    def run(self, documents: list[Document]) -> list[Chunk]:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",
            add_start_index=True,
        )
        chunks = []
        for document in documents:
            for piece in splitter.create_documents([document.text]):
                start = piece.metadata["start_index"]
                text = piece.page_content
                if document.text[start : start + len(text)] != text:  # never trust offsets blindly
                    start = document.text.find(text)
                    if start < 0:
                        raise RuntimeError(f"chunk not found in document {document.id!r}")
                chunks.append(Chunk(document.id, start, start + len(text), text))
        return chunks
