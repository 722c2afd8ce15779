"""A loaded collection: the store its passages are searched in, and what
each of its documents is (title, pages), read from its manifest."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from rag.index.store import PassageStore


@dataclass
class PassageIndex:
    store: PassageStore
    documents: dict[str, dict] = field(default_factory=dict)
    saved: bool = True  # False when the folder could not be written and the index lives in memory only

    def __len__(self) -> int:
        return self.store.count()

    def title(self, doc_id: str) -> str:
        return self.documents.get(doc_id, {}).get("title") or doc_id

    def holds(self, entries: list[dict]) -> bool:
        """Whether this index was loaded from exactly these manifest entries (documents and versions)."""
        return {(d, info.get("version")) for d, info in self.documents.items()} == {
            (e["id"], e["version"]) for e in entries}

    def page_starts(self, doc_id: str) -> list[int]:
        """Where each page of a paged document (PDF) starts in its text; empty for other documents."""
        return self.documents.get(doc_id, {}).get("pages") or []

    def page(self, doc_id: str, offset: int) -> int | None:
        """The page (from 1) of a paged document (PDF) holding the character at ``offset``."""
        pages = self.page_starts(doc_id)
        return bisect.bisect_right(pages, offset) if pages else None
