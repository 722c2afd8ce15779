"""The file store's keyword index: BM25 (``bm25s``) over a collection's
passages, accent-folded, without English and French stop words. Saved beside
the vectors, so that loading a collection (and reloading it after an upload)
reads it instead of tokenizing and indexing every passage again."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from array import array
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bumped whenever tokenizing changes: a saved index of another format is built again.
FORMAT = 1
_WORD = re.compile(r"\w\w+")


def fold(text: str) -> str:
    """Lower case without accents, so "fondé", "Fonde" and "FONDÉ" match."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

    return frozenset(fold(w) for w in (*STOPWORDS_EN, *STOPWORDS_FRENCH))


class KeywordIndex:
    """BM25 over passages numbered as the collection numbers them."""

    def __init__(self, bm25=None) -> None:
        self.bm25 = bm25  # None: no passages yet
        self.stopwords = _stopwords()

    def tokens(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(fold(text)) if w not in self.stopwords]

    @classmethod
    def build(cls, texts: list[str]) -> KeywordIndex:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG and logs every build
        index = cls()
        if texts:
            # Each passage's words as ids in a compact array: a fifth of the memory that lists of
            # strings take while the index is built (46 against 232 MB for 52,696 passages).
            vocabulary: dict[str, int] = {}
            ids = [array("I", (vocabulary.setdefault(w, len(vocabulary)) for w in index.tokens(t) or ["\0"]))
                   for t in texts]
            index.bm25 = bm25s.BM25()
            index.bm25.index((ids, vocabulary), show_progress=False)
        return index

    def search(self, query: str, k: int) -> list[int]:
        """The numbers of the ``k`` best passages for ``query`` that share a word with it, best first."""
        tokens = self.tokens(query)
        if not tokens or self.bm25 is None:
            return []
        scores = self.bm25.get_scores(tokens)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in order if scores[i] > 0]

    # Saved beside the vectors, one folder per set of passages.

    @staticmethod
    def key(versions: list[str]) -> str:
        """Names the passages indexed: the versions of the documents' passage files, in order."""
        return hashlib.sha256(json.dumps([FORMAT, versions]).encode()).hexdigest()[:16]

    @classmethod
    def load_or_build(cls, folder: Path, key: str, texts: list[str]) -> KeywordIndex:
        """The index saved under ``folder/key`` when there is one; else built from
        ``texts`` and saved there (atomically; a folder that cannot be written
        costs the saving only)."""
        import bm25s

        saved = folder / key
        if saved.is_dir() and texts:
            try:
                logging.getLogger("bm25s").setLevel(logging.WARNING)
                return cls(bm25s.BM25.load(str(saved)))
            except Exception as error:  # damaged: built again below, in its place
                log.warning("The keyword index %s could not be read (%s); building it again", saved, error)
                shutil.rmtree(saved, ignore_errors=True)
        index = cls.build(texts)
        if index.bm25 is not None:
            index.save(folder, key)
        return index

    def save(self, folder: Path, key: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
        except OSError as error:
            log.info("The keyword index was not saved in %s (%s)", folder, error)
            return
        try:
            self.bm25.save(str(staging))
            os.rename(staging, folder / key)
        except OSError as error:  # a full disk, or another process saved the same index first
            log.info("The keyword index was not saved in %s (%s)", folder, error)
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def clean(folder: Path, keep: str | None) -> None:
        """Delete saved indexes other than ``keep`` (older sets of passages, unfinished saves)."""
        for path in folder.glob("*") if folder.is_dir() else ():
            if path.name != keep:
                shutil.rmtree(path, ignore_errors=True)
