"""Retrieval: the passages most likely to answer a question."""
from rag.retrieval.hybrid import HybridRetriever, RetrievedPassage

__all__ = ["HybridRetriever", "RetrievedPassage"]
