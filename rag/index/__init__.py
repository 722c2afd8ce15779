"""Index: passages and their vectors, persisted under ``index/``."""
from rag.index.store import IndexStore, PassageIndex

__all__ = ["IndexStore", "PassageIndex"]
