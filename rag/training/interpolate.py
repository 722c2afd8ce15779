"""Interpolate two exported readers, or two verifiers, weight by weight (WiSE-FT,
Wortsman et al. 2022): ``(1 - alpha) * start + alpha * tuned``. A model
fine-tuned from another one stays in its basin, and points between the two
often trade answers against abstentions better than either end; costs nothing
at run time.

    python -m rag.training.interpolate rag/models/reader runs/distill/final --alpha 0.5 --out runs/wise-0.5
    python -m rag.training.train --calibrate runs/wise-0.5 --out runs/wise-0.5
    python -m rag.training.interpolate rag/models/verifier runs/es-en/final --alpha 0.5 --out runs/wise-v
    python -m rag.evaluation.verifier runs/es-en --verifier runs/wise-v
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

# Each model's card, and what in it was measured on or fitted to one end only.
CARDS = {"reader.json": ("calibration", "held_out", "held_out_device"),
         "verifier.json": ("confidence", "verified_spans", "min_confidence", "held_out", "alternates_below")}


def interpolate(start: Path, tuned: Path, alpha: float, out: Path) -> Path:
    """Write the interpolated model to ``out`` (weights, config, the tuned end's card naming both ends)."""
    from safetensors.torch import load_file, save_file

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    name = next((name for name in CARDS if (tuned / name).is_file()), None)
    if name is None:
        raise ValueError(f"{tuned} has no card ({' or '.join(CARDS)})")
    first, second = load_file(str(start / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    if first.keys() != second.keys() or any(first[k].shape != second[k].shape for k in first):
        raise ValueError(f"{start} and {tuned} are not the same architecture")
    mixed = {
        k: ((1 - alpha) * first[k].float() + alpha * second[k].float()).to(first[k].dtype).contiguous() for k in first
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(start / "config.json", out / "config.json")
    card = json.loads((tuned / name).read_text())
    card["interpolated"] = {"start": str(start), "tuned": str(tuned), "alpha": alpha}
    for measured in CARDS[name]:
        card.pop(measured, None)
    (out / name).write_text(json.dumps(card, indent=2, ensure_ascii=False))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("start", type=Path, help="the model fine-tuning started from")
    parser.add_argument("tuned", type=Path, help="the fine-tuned model")
    parser.add_argument("--alpha", type=float, required=True, help="0 gives start, 1 gives tuned")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(interpolate(args.start, args.tuned, args.alpha, args.out))


if __name__ == "__main__":
    main()
