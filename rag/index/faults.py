"""What a fault of the disk under a collection means to its user, and what to do.

The operating system says "Errno 30" or "File exists"; a user needs to hear
that the folder is read-only, the disk full, or a file in a folder's place,
and what to change. The collection is left as it was either way."""
from __future__ import annotations

import errno
from pathlib import Path


class StorageError(RuntimeError):
    """A collection could not be written (or read) on disk; the message says why and what to do."""


_WHY = {
    errno.EROFS: ("is on a read-only file system", "write it on a writable disk"),
    errno.EACCES: ("cannot be written (permission denied)", "make it writable for this user"),
    errno.EPERM: ("cannot be written (operation not permitted)", "make it writable for this user"),
    errno.ENOSPC: ("is on a full disk", "free some space"),
    errno.EDQUOT: ("is over its disk quota", "free some space"),
    errno.EEXIST: ("has a file where a folder should be", "move that file away"),
    errno.ENOTDIR: ("has a file where a folder should be", "move that file away"),
    errno.EISDIR: ("has a folder where a file should be", "move that folder away"),
}


def storage_error(error: OSError, name: str, folder: Path) -> StorageError:
    """A clear message for an OSError met while changing collection ``name``."""
    where = Path(error.filename).name if error.filename else folder.name
    why, fix = _WHY.get(error.errno, (f"cannot be written ({error.strerror or error})", "check the disk"))
    return StorageError(
        f"Collection {name!r} was not changed: its folder {folder} {why} ({where}). To keep working, {fix}, "
        "or point RAG_INDEX_DIR (--index-dir) at a writable folder; the collection is as it was."
    )
