"""One lock per tokenizer object.

A fast tokenizer keeps its truncation and padding settings in the Rust
tokenizer and resets them on a call whose settings differ, just before
encoding. Two threads calling one tokenizer with different settings (the
built-in embedder and reader share theirs; the reader alone switches settings
between its two calls) can therefore encode with each other's settings.
Every call this project makes on a tokenizer goes through its lock.
"""
from __future__ import annotations

import threading
import weakref

_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def tokenizer_lock(tokenizer) -> threading.Lock:
    """The lock shared by every user of ``tokenizer``."""
    with _registry:
        lock = _locks.get(tokenizer)
        if lock is None:
            lock = _locks[tokenizer] = threading.Lock()
        return lock
