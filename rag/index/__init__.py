"""Index: collections of documents with their passages and vectors, persisted under ``index/``,
searched in a passage store (the file store, or Milvus)."""
from rag.index.collection import DEFAULT_COLLECTION, AddReport, Collection, CollectionBusy
from rag.index.faults import StorageError
from rag.index.file_store import FileStore
from rag.index.manifest import list_collections
from rag.index.milvus_store import StoreUnavailable
from rag.index.names import check_name, collection_folder
from rag.index.passage_index import PassageIndex
from rag.index.store import PassageStore

__all__ = ["DEFAULT_COLLECTION", "AddReport", "Collection", "CollectionBusy", "FileStore", "PassageIndex",
           "PassageStore", "StorageError", "StoreUnavailable", "check_name", "collection_folder", "list_collections"]
