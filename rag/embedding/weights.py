"""Weight handling shared by the embedder and the reader."""
from __future__ import annotations


def compute_in_fp32(model) -> None:
    """Cast every floating weight to float32 except the input word-embedding
    matrix, which keeps the checkpoint's precision: it is only looked up, not
    multiplied, and at 250k rows it is most of the model's memory."""
    import torch

    embeddings = model.get_input_embeddings().weight
    for parameter in model.parameters():
        if parameter is not embeddings and parameter.is_floating_point() and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    for buffer in model.buffers():
        if buffer.is_floating_point() and buffer.dtype != torch.float32:
            buffer.data = buffer.data.float()


def share_word_embeddings(source, target) -> bool:
    """Make ``target`` use ``source``'s word-embedding matrix, freeing its own
    copy. Only for models known to hold the same matrix (the built-in reader
    froze the embedder's during training); shapes and types are checked, the
    values are not, since reading them would page in both copies."""
    mine, theirs = source.get_input_embeddings(), target.get_input_embeddings()
    if mine.weight.shape != theirs.weight.shape or mine.weight.dtype != theirs.weight.dtype:
        return False
    target.set_input_embeddings(mine)
    return True
