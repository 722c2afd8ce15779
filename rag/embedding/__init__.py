"""Embedding: passages and questions into normalized vectors."""
from rag.embedding.embedder import Embedder

__all__ = ["Embedder"]
