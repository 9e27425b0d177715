"""`python -m xvit_edge.train` (or `torchrun --nproc_per_node N -m xvit_edge.train`): fine-tune X-ViT."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
import math
import os
import sys
import time
from pathlib import Path

from ..cli_types import (LOG_LEVELS, HelpFormatter, finite_float, nonnegative_float, nonnegative_int, positive_float,
                         positive_fraction, positive_int, probability, worker_count)
from ..config import PRESETS, XViTConfig
from ..files import OVERWRITE_HELP, printable, refuse_existing
from ..model.init import SCRATCH_INITS
from ..signals import terminate_as_interrupt
from .loop import OUTPUT_FILES, TrainConfig, check_out, train


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def device_name(text: str) -> str:
    """--device: a torch device this machine has (`cuda` without CUDA would fail deep inside torch)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this torch has no CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


def parse_overrides(items: list[str]) -> dict:
    """`key=value` pairs for XViTConfig fields; values are Python literals (`shift_div=8`, `causal=True`).
    A yes/no field takes true/false in any case: the string "false" must not pass as a truthy value."""
    fields = {f.name: f for f in dataclasses.fields(XViTConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--set expects key=value, got {item!r}")
        if key == "num_classes":
            raise argparse.ArgumentTypeError("--set num_classes: the number of classes comes from the training data")
        if key == "name":
            raise argparse.ArgumentTypeError("--set name: the name is the --preset's")
        if key not in fields:
            raise argparse.ArgumentTypeError(f"--set {key}: not an XViTConfig field; fields: {', '.join(fields)}")
        if fields[key].type in ("bool", bool):
            if value.lower() not in _BOOLS:
                raise argparse.ArgumentTypeError(f"--set {key}={value}: expected true or false")
            out[key] = _BOOLS[value.lower()]
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare word such as attention=space_only
    return out


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(train_data="")
    p = argparse.ArgumentParser(
        prog="python -m xvit_edge.train",
        description="Fine-tune an X-ViT video classifier on your clips. Run under torchrun for "
        "DistributedDataParallel on several processes (gloo on CPU, nccl on GPU).",
        formatter_class=HelpFormatter)
    p.add_argument("--train-data", required=True,
                   help="training clips: a folder with one sub-folder per class, or a CSV/txt list of 'path,label'")
    p.add_argument("--val-data", help="validation clips, same forms as --train-data; evaluated after every epoch")
    p.add_argument("--out", default=d.out, help="output folder: last.pt, best.pt, history.json, training_curve.png; "
                   "one that holds them already is refused (another run's results) unless --resume continues that "
                   "run or --overwrite is given")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--preset", default=d.preset, choices=sorted(PRESETS), help="model architecture")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an XViTConfig field, e.g. --set attention=space_only --set num_frames=16")
    p.add_argument("--init", help="start from weights: an xvit_edge checkpoint, a timm ViT/DeiT image checkpoint, "
                   "or an official X-ViT checkpoint (format detected); default: from scratch")
    p.add_argument("--scratch-init", choices=SCRATCH_INITS, default=d.scratch_init,
                   help="initialisation when training from scratch (no --init): 'mimetic' starts W_q, W_k near the "
                   "identity with a sine-cosine position embedding, so attention starts local and motion is learned "
                   "quickly (xvit_edge/model/init.py); 'timm' is ViT's usual N(0, 0.02)")
    p.add_argument("--resume", help="continue an interrupted run from its last.pt (model, optimizer, epoch); the "
                   "training data must have the run's classes; --out may be the run's own folder")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="clips per step and per process")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="peak AdamW learning rate, after warm-up")
    p.add_argument("--min-lr", type=nonnegative_float, default=d.min_lr,
                   help="learning rate at the end of the cosine decay")
    p.add_argument("--weight-decay", type=nonnegative_float, default=d.weight_decay,
                   help="AdamW weight decay (not applied to biases, norms, tokens, embeddings)")
    p.add_argument("--warmup-epochs", type=nonnegative_float, default=d.warmup_epochs,
                   help="linear warm-up length, in epochs")
    p.add_argument("--label-smoothing", type=probability, default=d.label_smoothing,
                   help="cross-entropy label smoothing, in [0, 1]")
    p.add_argument("--grad-clip", type=nonnegative_float, default=d.grad_clip,
                   help="max gradient norm; 0 disables clipping")
    p.add_argument("--sampling", default=d.sampling, choices=["segment", "uniform"],
                   help="frame sampling: 'segment' (TSN/SSv2, one frame per segment) or 'uniform' "
                   "(Kinetics-style dense clip with --stride)")
    p.add_argument("--stride", type=positive_int, default=d.stride, help="frame stride for --sampling uniform")
    p.add_argument("--scale-min", type=positive_fraction, default=d.scale_min,
                   help="augmentation: smallest crop area fraction (one crop per clip)")
    p.add_argument("--flip", action="store_true",
                   help="augmentation: random horizontal flip (leave off when classes depend on left/right)")
    p.add_argument("--reverse-pairs", default=d.reverse_pairs, metavar="auto|none|A:B,C:D",
                   help="classes that are each other played backwards (open:close); beside each clip of such a "
                   "class its batch gets the clip reversed in time, labelled with the partner, so order-blind "
                   "features cancel and the model must learn the order. 'auto' takes the pairs from a meta.json "
                   "beside the training data (python -m xvit_edge.data.synthetic writes one) and uses none without it")
    p.add_argument("--focus", default="", metavar="A,B",
                   help="curriculum: classes to train alone first, for --focus-epochs passes over their clips, before "
                   "epoch 1 (every class stays in the model's head; the validation after it is recorded as epoch 0). "
                   "For a pair that stays at chance among many classes: on the synthetic benchmark the 0.27 M "
                   "nano model learns rotate_cw,rotate_ccw alone but not among all 12 classes, and keeps it after")
    p.add_argument("--focus-epochs", type=nonnegative_int, default=d.focus_epochs,
                   help="passes over the --focus classes' clips before the main epochs")
    p.add_argument("--mean", type=finite_float, nargs=3, help="normalisation mean (default: ImageNet's)")
    p.add_argument("--std", type=positive_float, nargs=3, help="normalisation std, each > 0 (default: ImageNet's)")
    p.add_argument("--workers", type=worker_count, default=d.workers,
                   help="data-loading processes per training process")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed, help="random seed")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="logging level")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))  # usage and one line, exit 2
    if bool(args.focus) != (args.focus_epochs > 0):
        parser.error("--focus and --focus-epochs go together: name the classes and how many passes over them")
    if args.min_lr > args.lr:
        parser.error(f"--min-lr {args.min_lr:g} is above --lr {args.lr:g}: the schedule decays from --lr to --min-lr")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(
        train_data=args.train_data, val_data=args.val_data, out=args.out, preset=args.preset,
        model_overrides=overrides, init=args.init, scratch_init=args.scratch_init, resume=args.resume,
        epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, grad_clip=args.grad_clip,
        sampling=args.sampling, stride=args.stride, scale_min=args.scale_min, flip=args.flip,
        reverse_pairs=args.reverse_pairs, focus=tuple(c for c in args.focus.split(",") if c),
        focus_epochs=args.focus_epochs,
        mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None,
        workers=args.workers, seed=args.seed, max_steps=args.max_steps, device=args.device)
    started = time.time()
    terminate_as_interrupt()
    try:
        check_out(cfg)  # first: an output that is one of the inputs gets its own message
        if not args.resume:  # a new run must not silently replace an earlier run's (or anyone's) files
            for name in OUTPUT_FILES:
                refuse_existing({"--out": Path(args.out) / name}, args.overwrite)
        state = train(cfg).state
    except (OSError, ValueError, FloatingPointError) as e:  # bad paths, data, configs, checkpoints; divergence
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # checkpoints are written whole or not at all: last.pt is the last finished epoch
        ckpt = Path(args.out) / "last.pt"
        ours = ckpt.is_file() and ckpt.stat().st_mtime >= started  # not an earlier run's in the same folder
        print("interrupted" + (f"; continue with --resume {printable(ckpt)}" if ours else "; no epoch finished"),
              file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report
        last = state["history"][-1] if state["history"] else {}
        print(f"done: {state['epoch']} epochs, {state['step']} steps; last epoch: "
              + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
        print(final_line(state, Path(args.out), bool(args.val_data)))
    return 0


def final_line(state: dict, out: Path, validated: bool) -> str:
    """Where the model to use is: best.pt (best validation top-1), or last.pt when there was no validation."""
    path = out / ("best.pt" if validated else "last.pt")
    if not path.is_file():
        return f"no checkpoint written in {printable(out)} (no epoch finished)"
    if not validated:
        return f"model: {printable(path)} (no --val-data, so none was picked by validation)"
    epoch = state.get("best_epoch")
    top1 = state.get("best_top1", -math.inf)
    said = f" (epoch {epoch}, val top-1 {100 * top1:.1f}%)" if epoch is not None and math.isfinite(top1) else ""
    return f"best model: {printable(path)}{said}"


if __name__ == "__main__":
    sys.exit(main())
