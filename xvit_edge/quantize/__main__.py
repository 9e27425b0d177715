"""`python -m xvit_edge.quantize --checkpoint CKPT --data DIR --mode qat|ptq --out OUT.pt`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..cli_types import HelpFormatter, positive_float, positive_int, worker_count
from ..files import OVERWRITE_HELP, refuse_existing
from ..model.weights import is_checkpoint
from ..quiet import quiet_toolchains
from ..signals import terminate_as_interrupt
from .pipeline import QuantizeOptions, quantize_checkpoint
from .scheme import MODES, SCHEMES


def build_parser() -> argparse.ArgumentParser:
    d = QuantizeOptions()
    p = argparse.ArgumentParser(
        prog="python -m xvit_edge.quantize",
        description="Quantize an xvit_edge checkpoint to int8 (XNNPACK quantizer: int8 per-channel weights, int8 "
        "activations, static or dynamic: see --scheme) by quantization-aware fine-tuning (qat) or post-training calibration (ptq), "
        "report SQNR, top-1 agreement and accuracy against fp32 on the held-out split, and write a quantized "
        "checkpoint for python -m xvit_edge.export --precision int8.",
        formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the fp32 xvit_edge checkpoint to quantize (e.g. best.pt)")
    p.add_argument("--data", required=True,
                   help="dataset folder with a 'train' and a 'val' split (a folder per class, or train.csv / "
                   "val.csv lists), as python -m xvit_edge.data.synthetic writes; labels follow the checkpoint")
    p.add_argument("--mode", required=True, choices=MODES,
                   help="qat: fine-tune with fake quantization; ptq: calibrate only (the baseline)")
    p.add_argument("--out", required=True, help="where to write the quantized checkpoint (.pt); an existing "
                   "xvit_edge checkpoint there is replaced, any other file only with --overwrite")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--scheme", choices=SCHEMES, default=d.scheme,
                   help="int8 activations: static (per-tensor ranges found by calibration or QAT; runs on ExecuTorch, "
                   "onnxruntime and Core ML) or dynamic (each linear's input quantized per call, per token in "
                   "XNNPACK, linears only, --mode ptq; ExecuTorch only)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="qat: fine-tuning epochs over the train split")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="qat: peak AdamW learning rate (cosine decay to lr/100)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="clips per batch")
    p.add_argument("--calib-batches", type=positive_int, default=d.calib_batches,
                   help="ptq: training batches (centre views, shuffled) used to calibrate the observers; both modes: "
                   "the batches streamed frame by frame to calibrate a causal model's streaming step (--mode stream export)")
    p.add_argument("--max-steps", type=positive_int, help="qat: stop after this many steps (smoke tests)")
    p.add_argument("--eval-batches", type=positive_int, help="evaluate on at most this many held-out batches (default: all)")
    p.add_argument("--workers", type=worker_count, default=d.workers, help="data-loading processes")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (shuffling, augmentation)")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    p.add_argument("--verbose", action="store_true",
                   help="also show the toolchains' own warnings and log lines (torchao, torch.export), hidden by default")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    terminate_as_interrupt()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = QuantizeOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                              calib_batches=args.calib_batches, max_steps=args.max_steps,
                              eval_batches=args.eval_batches, workers=args.workers, seed=args.seed,
                              scheme=args.scheme)
    try:
        options.check()
        out = Path(args.out)
        if out.resolve() == Path(args.checkpoint).resolve():
            raise ValueError(f"--out {out} would overwrite the input checkpoint; choose another file")
        # Fail now, not after minutes of fine-tuning.
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot write to {out.parent}: {e.strerror or e}") from e
        if out.is_dir() or not os.access(out.parent, os.W_OK):
            raise ValueError(f"cannot write {out}: " + ("it is a folder" if out.is_dir() else "permission denied"))
        refuse_existing({"--out": out}, args.overwrite, ours=is_checkpoint)
        with quiet_toolchains(args.verbose):
            q = quantize_checkpoint(args.checkpoint, args.data, args.mode, out, options)
    except (FileNotFoundError, ValueError) as e:  # bad paths, data, checkpoints (CheckpointError, VideoError)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the checkpoint is written whole or not at all
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    val = q.metrics["val"]
    print(f"{args.mode} ({args.scheme}): wrote {out}; held-out split ({val['clips']} clips): SQNR {val['sqnr_db']:.1f} dB, "
          f"top-1 agreement {100 * val['top1_agreement']:.1f}%, top-1 fp32 {100 * val['fp32_top1']:.1f}% -> "
          f"int8 {100 * val['int8_top1']:.1f}%; {len(q.skipped)} batches skipped")
    if "stream_val" in q.metrics:
        s = q.metrics["stream_val"]
        print(f"streaming step (int8, each clip streamed from a fresh state): SQNR {s['sqnr_db']:.1f} dB, top-1 "
              f"agreement {100 * s['top1_agreement']:.1f}%, top-1 {100 * s['int8_top1']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
