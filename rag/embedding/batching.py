"""Token batches, shared by the embedder and the reader."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def padded_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to the longest sequence, and the attention mask."""
    width = max(len(ids) for ids in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask
