"""Token batches, shared by the embedder and the reader."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The ONNX engines get batches padded to a multiple of this many tokens: OpenVINO
# prepares each new input shape once, and rounded widths bring fewer of them (and
# whole AMX tiles). Measured here: warm p50 about 6 ms lower, passage embedding
# about a tenth faster (README, "Speed and memory"). Padding changes no result:
# the attention mask hides it and it is cut from every output.
ENGINE_WIDTH_MULTIPLE = 16


def padded_batch(sequences: Sequence[Sequence[int]], pad_id: int,
                 multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to the longest sequence (rounded up to ``multiple``), and the attention mask."""
    width = -(-max(len(ids) for ids in sequences) // multiple) * multiple
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask
