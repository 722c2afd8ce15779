"""Index: collections of documents with their passages and vectors, persisted under ``index/``."""
from rag.index.collection import (DEFAULT_COLLECTION, AddReport, Collection, CollectionBusy, PassageIndex,
                                  list_collections)
from rag.index.faults import StorageError
from rag.index.names import check_name, collection_folder

__all__ = ["DEFAULT_COLLECTION", "AddReport", "Collection", "CollectionBusy", "PassageIndex", "StorageError",
           "check_name", "collection_folder", "list_collections"]
