"""Writing a collection's files so that a reader never sees half of one."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_file(path: Path):
    """A file to write that replaces ``path`` only once it is whole and on disk;
    after an error ``path`` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def batch_done(path: Path, rows: int) -> bool:
    """Whether an earlier run left this batch of vectors, whole."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).shape[0] == rows
    except (OSError, ValueError):
        return False
