"""Collection names: one rule wherever a name comes in (settings, environment,
command line, the chat), so that a collection is always a folder directly
inside the index folder and never a path that leaves it."""
from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def is_name(name: object) -> bool:
    """Whether ``name`` is a plain collection name (never a path)."""
    return isinstance(name, str) and bool(_NAME.match(name)) and ".." not in name


def check_name(name: object) -> str:
    """``name`` when it is a plain collection name; a ValueError saying the rule otherwise."""
    if not is_name(name):
        raise ValueError(f"{name!r} is not a collection name: use up to 64 letters, digits, '.', '-' or '_', "
                         "starting with a letter or digit (a name, not a path)")
    return name


def collection_folder(index_dir: Path, name: str) -> Path:
    """The folder of collection ``name``: inside ``index_dir`` once resolved (a
    link that points elsewhere is refused too)."""
    folder = Path(index_dir) / check_name(name)
    if folder.resolve().parent != Path(index_dir).resolve():
        raise ValueError(f"collection {name!r} would leave the index folder {index_dir} (a link?): refused")
    return folder


def collection_names(index_dir: Path, manifest: str) -> list[str]:
    """The collections under ``index_dir``: folders with a plain name that hold a ``manifest``, sorted."""
    try:
        folders = list(Path(index_dir).iterdir())
    except OSError:  # no index folder yet, or one that cannot be read: no collections to offer
        return []
    return sorted(f.name for f in folders if is_name(f.name) and (f / manifest).is_file())
