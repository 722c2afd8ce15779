"""The Milvus store: a collection's passages in Milvus, one Milvus collection
per rag collection, searched where they are (BM25 and dense), so that the
answering process holds no vectors. ``milvus:PATH.db`` is Milvus Lite, a local
file served by the one process that opened it; ``milvus:http://HOST:19530`` a
Milvus server or cluster, shared by any number of chat servers.

Rows are named ``<document>.<version>.<key>#<n>`` (the passage file's stem and
the passage's number), so writing a batch again (a resumed add) replaces it.
Rows of versions the manifest does not list (an add in progress, an
interrupted one) are never answered from, and the next writer deletes them."""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.documents import Chunk
from rag.index.keywords import KeywordIndex

PREFIX = "milvus:"
CONNECT_TIMEOUT_S = 5.0
# bm25s's defaults, which the file store uses: the same ranking in both stores.
BM25_K1, BM25_B = 1.5, 0.75
MAX_TEXT = 65_535  # bytes of a VARCHAR field in Milvus
# The dense index a new Milvus collection gets: FLAT (exact), or HNSW with the file store's
# graph (M 32) and search breadth (ef 256), for collections a flat scan makes slow.
INDEXES = {"FLAT": ({}, {}), "HNSW": ({"M": 32, "efConstruction": 200}, {"ef": 256})}
_OVERFETCH = 2  # searches ask for this many times k, for the rows of unlisted versions they drop


class StoreUnavailable(RuntimeError):
    """The passage store cannot be reached or opened; the message says why and what to do."""


def is_milvus(store: str) -> bool:
    return store.startswith(PREFIX)


def _is_server(target: str) -> bool:
    """Whether a Milvus target is a server's address (else a Milvus Lite file)."""
    return target.startswith(("http://", "https://", "tcp://"))


def check_store(store: str) -> str:
    """``store`` when it names a store ("files", "milvus:PATH.db", "milvus:http(s)://…"); a ValueError otherwise."""
    if store == "files":
        return store
    target = store.removeprefix(PREFIX) if is_milvus(store) else ""
    if _is_server(target) or target.endswith(".db"):
        return store
    raise ValueError(f"RAG_STORE must be 'files', 'milvus:PATH.db' (Milvus Lite) or 'milvus:http://HOST:19530' "
                     f"(a Milvus server), not {store!r}")


def milvus_name(collection: str) -> str:
    """A Milvus collection name (letters, digits, '_') for a rag collection name, one to one."""
    return "rag_" + collection.replace("_", "__").replace("-", "_h").replace(".", "_d")


_clients: dict[str, object] = {}
_clients_guard = threading.Lock()


def client_for(store: str, token: str = ""):
    """This process's one client of a store (Milvus Lite lets one process open its file)."""
    target = store.removeprefix(PREFIX)
    with _clients_guard:
        if target not in _clients:
            _clients[target] = _connect(target, token)
        return _clients[target]


def close_client(store: str) -> None:
    """Let go of a store this process opened (Milvus Lite's file then opens in another process)."""
    target = store.removeprefix(PREFIX)
    with _clients_guard:
        client = _clients.pop(target, None)
    if client is None:
        return
    client.close()
    if not _is_server(target):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(target)


def _connect(target: str, token: str):
    # gRPC's C core would note on the terminal each time a file is read in a process of its own (a fork).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise StoreUnavailable("RAG_STORE names a Milvus store, but pymilvus is not installed: "
                               "pip install -e '.[milvus]'") from None
    for name in ("pymilvus", "milvus_lite", "grpc._server"):  # each failure is told once, in the error raised here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    lite = not _is_server(target)
    try:
        if lite:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        return MilvusClient(uri=target, token=token, timeout=CONNECT_TIMEOUT_S)
    except Exception as error:  # pymilvus raises its own exceptions, and Milvus Lite others
        if lite and _locked(target):
            raise StoreUnavailable(
                f"The Milvus Lite file {target} is open in another process: Milvus Lite serves one process. "
                "Stop that process (a chat server, a rag command) and try again, or run a Milvus server and "
                "point every process at it (RAG_STORE=milvus:http://HOST:19530).") from None
        if lite:
            raise StoreUnavailable(
                f"The Milvus Lite file {target} cannot be opened ({_reason(error)}). The collections' "
                "documents are kept in the index folder: move the file away, and `rag index --collection NAME` "
                "fills a new one from them, collection by collection, without embedding again.") from None
        raise StoreUnavailable(f"The Milvus server at {target} does not answer ({_reason(error)}): start it, "
                               "or check RAG_STORE and RAG_MILVUS_TOKEN.") from None


def _locked(lite_file: str) -> bool:
    """Whether another process holds Milvus Lite's lock on this file (its folder's LOCK)."""
    import fcntl

    try:
        with open(Path(lite_file) / "LOCK", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _reason(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error) or type(error).__name__


def _quoted(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


class MilvusStore:
    """One rag collection's passages in a Milvus collection; searches answer
    only from ``listed``, the passage files its manifest lists (stem → passages)."""

    def __init__(self, client, collection: str, listed: dict[str, int] | None = None, index: str = "FLAT") -> None:
        self.client = client
        self.name = milvus_name(collection)
        self.index = index
        listed = listed or {}
        self.stems = set(listed)
        self.listed_passages = sum(listed.values())
        self.keywords = KeywordIndex()  # its tokens only: folded, without stop words, as the file store's
        self._loaded = False

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as error:
            if isinstance(error, StoreUnavailable):
                raise
            raise StoreUnavailable(f"Milvus could not {method.replace('_', ' ')} collection {self.name} "
                                   f"({_reason(error)})") from None

    @property
    def exists(self) -> bool:
        """Whether the Milvus collection exists; it is loaded for searching the first time it is found."""
        if self._loaded:
            return True
        if not self._call("has_collection", self.name):
            return False
        self._call("load_collection", self.name)  # a collection opened again is "released" until loaded
        self._loaded = True
        return True

    # Writing (under the collection's lock).

    def create(self, dimension: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        if self.exists:
            return
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=MAX_TEXT)
        schema.add_field("stem", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("words", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["words"],
                                     output_field_names=["sparse"]))
        indexes = self.client.prepare_index_params()
        indexes.add_index("vector", index_type=self.index, metric_type="IP", params=INDEXES[self.index][0])
        indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                          params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
        self._call("create_collection", self.name, schema=schema, index_params=indexes, consistency_level="Strong")

    def write(self, stem: str, first: int, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Passages ``first``… of a passage file, with their vectors (again: replaced, not doubled)."""
        if not chunks:
            return
        self.create(int(vectors.shape[1]))
        rows = [{"pk": f"{stem}#{first + n}", "stem": stem, "doc_id": c.doc_id, "start": c.start, "end": c.end,
                 "text": c.text, "words": " ".join(self.keywords.tokens(c.text)),
                 "vector": np.asarray(v, dtype=np.float32).tolist()} for n, (c, v) in enumerate(zip(chunks, vectors))]
        self._call("upsert", self.name, rows)

    def keep_only(self) -> None:
        """Delete the rows of every passage file but the listed ones (removed documents, older versions),
        then seal what was written: Milvus searches sealed rows through their indexes, and
        scans rows still growing one by one (at 20,000 passages in Milvus Lite, 0.7 s a dense
        search and 2 s a BM25 one before, 25 and 16 ms after)."""
        if self.exists:
            self._call("delete", self.name, filter=f"stem not in {_quoted(sorted(self.stems))}")
            self._call("flush", self.name)

    def held(self, stem: str) -> int:
        """How many passages of one passage file the store holds."""
        return self._count(f"stem == {json.dumps(stem, ensure_ascii=False)}")

    def _count(self, expression: str) -> int:
        if not self.exists:
            return 0
        rows = self._call("query", self.name, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    # Searching.

    def complete(self) -> bool:
        """Whether Milvus holds every listed passage. Counting every row is quick, counting by a
        filter is not (1 s at 20,000 rows in Milvus Lite), so the filter is used only when
        other rows are there too (an add in progress, or an interrupted one)."""
        every = self._count("")
        if every <= self.listed_passages:
            return every == self.listed_passages
        return self._count(f"stem in {_quoted(sorted(self.stems))}") == self.listed_passages

    def count(self) -> int:
        """The listed passages (what the manifest says; :meth:`complete` checks Milvus holds them)."""
        return self.listed_passages

    def _listed(self, hits, k: int) -> list[str]:
        keys = [hit["pk"] for hit in hits[0]] if hits else []
        return [key for key in keys if key.rpartition("#")[0] in self.stems][:k]

    def dense_search(self, vector: np.ndarray, k: int) -> list[str]:
        if not self.stems or k <= 0:
            return []
        hits = self._call("search", self.name, data=[np.asarray(vector, dtype=np.float32).tolist()],
                          anns_field="vector", limit=k * _OVERFETCH, output_fields=["pk"],
                          search_params={"metric_type": "IP", "params": INDEXES[self.index][1]})
        return self._listed(hits, k)

    def keyword_search(self, query: str, k: int) -> list[str]:
        words = " ".join(self.keywords.tokens(query))
        if not self.stems or not words or k <= 0:
            return []
        hits = self._call("search", self.name, data=[words], anns_field="sparse", limit=k * _OVERFETCH,
                          output_fields=["pk"], search_params={"metric_type": "BM25"})
        return self._listed(hits, k)

    def passages(self, keys: Sequence[str], vector: np.ndarray) -> dict[str, tuple[Chunk, float]]:
        if not keys:
            return {}
        rows = {row["pk"]: row for row in self._call("get", self.name, ids=list(keys),
                                                      output_fields=["doc_id", "start", "end", "text", "vector"])}
        query = np.asarray(vector, dtype=np.float32)
        return {key: (Chunk(row["doc_id"], int(row["start"]), int(row["end"]), row["text"]),
                      float(np.asarray(row["vector"], dtype=np.float32) @ query)) for key, row in rows.items()}
