"""Verifier: a second reading of the reader's best spans, so that a span the
document does not support can be refused rather than answered with confidence."""
from __future__ import annotations

from rag.verifier.verifier import Verifier

__all__ = ["Verifier"]
