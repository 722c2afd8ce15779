"""A collection's manifest (``collection.json``): which documents, in which
versions, with which passage and vector files, make the collection."""
from __future__ import annotations

from pathlib import Path

from rag.index.names import collection_names

FORMAT_VERSION = 2
MANIFEST = "collection.json"


def list_collections(index_dir: Path) -> list[str]:
    """The collections written under ``index_dir`` (each has its manifest), sorted by name."""
    return collection_names(index_dir, MANIFEST)


def check_manifest_shape(manifest: object) -> None:
    """A manifest is checked before anything in it is trusted: valid JSON of
    another shape is a damaged collection, not a crash."""
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError("the manifest is not a collection manifest of this version")
    if not isinstance(manifest.get("built_from"), dict) or not isinstance(manifest.get("documents"), list):
        raise ValueError("the manifest's 'built_from' or 'documents' is missing or of the wrong type")
    for entry in manifest["documents"]:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("id", "version", "key"))
                and isinstance(entry.get("files"), dict) and isinstance(entry.get("passages"), int)):
            raise ValueError("a document entry of the manifest is damaged")
