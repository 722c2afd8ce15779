"""ONNX exports of the built-in embedder, reader and verifier, for a query path that
needs neither torch nor transformers (an ONNX engine and ``tokenizers`` only:
onnxruntime or OpenVINO, :mod:`rag.embedding.engine`).

The three models were made from one encoder and share its 250k-row word-embedding
table, so the table is taken out of the graphs: it is stored once, fp16, as a
NumPy file that the query path maps into memory, and each graph takes the
looked-up rows (``inputs_embeds``) and the attention mask. The folder is
written once (``rag setup`` or on first use) from the materialized models,
atomically, with a manifest naming the weights it was made from and the size
and SHA-256 of each file it holds.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from rag.embedding.materialize import read_manifest, sha256_file, staging_folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "exported.json"
EMBEDDER, READER, VERIFIER = "embedder.onnx", "reader.onnx", "verifier.onnx"
WORD_EMBEDDINGS = "word_embeddings.npy"
FILES = (EMBEDDER, READER, VERIFIER, WORD_EMBEDDINGS)
OPSET = 17


def export_identity(embedder_dir: Path, reader_dir: Path, verifier_dir: Path) -> dict:
    """What the exports are made from: the materialized models' weight hashes."""
    return {
        "format_version": FORMAT_VERSION,
        "embedder_sha256": (read_manifest(embedder_dir) or {}).get("weights_sha256"),
        "reader_sha256": (read_manifest(reader_dir) or {}).get("weights_sha256"),
        "verifier_sha256": (read_manifest(verifier_dir) or {}).get("weights_sha256"),
    }


def exports_verified(folder: Path, expected: dict, deep: bool = False) -> bool:
    """True when ``folder`` holds the exports of these models, each file
    checked by size (start-up) or by SHA-256 (``deep``)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict):
        return False
    for name in FILES:
        path, recorded = folder / name, files.get(name)
        if not isinstance(recorded, dict) or not path.is_file() or path.stat().st_size != recorded.get("bytes"):
            return False
        if deep and sha256_file(path) != recorded.get("sha256"):
            return False
    return True


def export_models(embedder_dir: Path, reader_dir: Path, verifier_dir: Path, target: Path,
                  deep: bool = False) -> Path:
    """The ONNX folder at ``target`` for these three models, exported unless
    already there (checked by size, or by hash when ``deep``)."""
    expected = export_identity(embedder_dir, reader_dir, verifier_dir)
    if None in expected.values():
        raise ValueError(f"{embedder_dir}, {reader_dir} and {verifier_dir} must be materialized models "
                         "(with their manifests)")
    if exports_verified(target, expected, deep):
        return target
    log.info("Exporting the embedder, reader and verifier to ONNX in %s", target)
    with staging_folder(target) as staging:
        _export(embedder_dir, reader_dir, verifier_dir, staging)
        files = {name: {"bytes": (staging / name).stat().st_size, "sha256": sha256_file(staging / name)}
                 for name in FILES}
        (staging / MANIFEST).write_text(json.dumps({**expected, "files": files}, indent=2))
    return target


def _export(embedder_dir: Path, reader_dir: Path, verifier_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from rag.embedding.weights import compute_in_fp32

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # Attention written out (eager) rather than fused (sdpa) exports to a graph
    # that onnxruntime runs about a tenth faster on this CPU.
    encoder = AutoModel.from_pretrained(str(embedder_dir), dtype="auto", attn_implementation="eager")
    reader = AutoModelForQuestionAnswering.from_pretrained(str(reader_dir), dtype="auto",
                                                           attn_implementation="eager")
    verifier = AutoModelForSequenceClassification.from_pretrained(str(verifier_dir), dtype="auto",
                                                                  attn_implementation="eager")
    table = encoder.get_input_embeddings().weight.detach()
    for name, model in (("reader", reader), ("verifier", verifier)):
        if not torch.equal(table, model.get_input_embeddings().weight.detach()):
            raise ValueError(f"the {name} does not share the embedder's word embeddings")
    np.save(out / WORD_EMBEDDINGS, table.numpy())
    for model in (encoder, reader, verifier):
        compute_in_fp32(model)
        model.eval()

    class FromEmbeddings(torch.nn.Module):
        """The model with looked-up word embeddings as input, and plain tensors as output."""

        def __init__(self, model, outputs: list[str]) -> None:
            super().__init__()
            self.model, self.outputs = model, outputs

        def forward(self, inputs_embeds, attention_mask):
            output = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
            return tuple(getattr(output, name) for name in self.outputs)

    # A padded second row, so that the traced graph keeps the attention mask.
    example = (table[torch.tensor([[0, 1000, 2000, 2], [0, 1000, 2, 1]])].float(),
               torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    axes = {0: "batch", 1: "tokens"}
    for model, name, outputs in ((encoder, EMBEDDER, ["last_hidden_state"]),
                                 (reader, READER, ["start_logits", "end_logits"]),
                                 (verifier, VERIFIER, ["logits"])):
        # The tracer warns about every Python-level branch; the exports are
        # checked against the models themselves by the tests instead.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                FromEmbeddings(model, outputs), example, str(out / name),
                input_names=["inputs_embeds", "attention_mask"], output_names=outputs,
                dynamic_axes={n: axes for n in ["inputs_embeds", "attention_mask", *outputs]},
                opset_version=OPSET, dynamo=False,
            )
