"""The held-out split shared by every training set and evaluation: whole
articles, every tenth by position in its file, never seen in training."""
from __future__ import annotations

from rag.evaluation.squad import QAExample


def held_out(example: QAExample) -> bool:
    return example.article_index % 10 == 0
