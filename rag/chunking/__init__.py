"""Chunking: documents into overlapping passages that know their offsets."""
from rag.chunking.splitter import DocumentSplitter

__all__ = ["DocumentSplitter"]
