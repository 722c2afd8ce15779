"""Assemble a full model folder (the reader, the verifier): the trained weights
shipped in the package plus the frozen word embeddings of the materialized
embedder, which training left untouched."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rag.embedding.materialize import read_manifest, sha256_file, staged_folder, verified

log = logging.getLogger(__name__)

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def assemble_model(trained: Path, embedder: Path, target: Path, deep: bool = False) -> Path:
    """A Hugging Face folder (its class named by ``trained``'s config) at ``target``, reused
    when made from these weights (its own file checked by hash when ``deep``)."""
    expected = {
        "trained_sha256": sha256_file(trained / "model.safetensors"),
        "embedder_sha256": (read_manifest(embedder) or {}).get("weights_sha256") or sha256_file(
            embedder / "model.safetensors"
        ),
    }
    if verified(target, expected, deep):
        return target
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    log.info("Assembling %s into %s", trained.name, target)
    with staged_folder(target, expected) as staging:
        state = load_file(str(trained / "model.safetensors"))
        with safe_open(str(embedder / "model.safetensors"), framework="pt") as handle:
            state["bert." + WORD_EMBEDDINGS] = handle.get_tensor(WORD_EMBEDDINGS)
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(trained / "config.json", staging / "config.json")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(embedder / name, staging / name)
    return target
