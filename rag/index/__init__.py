"""Index: collections of documents with their passages and vectors, persisted under ``index/``."""
from rag.index.collection import DEFAULT_COLLECTION, AddReport, Collection, CollectionBusy, PassageIndex

__all__ = ["DEFAULT_COLLECTION", "AddReport", "Collection", "CollectionBusy", "PassageIndex"]
