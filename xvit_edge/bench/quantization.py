"""`python -m xvit_edge.bench.quantization`: what int8 costs a trained model, PTQ against QAT.

Quantizes a checkpoint both ways on a dataset's `train/` split and compares fp32, PTQ int8 and QAT int8 on its
`val/` split (top-1, and the SQNR and top-1 agreement of the int8 logits against fp32), plus the ablation that
keeps the adds float (`ptq_adds_int8`). Writes `quantization[_TAG].json`, which `python -m xvit_edge.bench`
quotes. `python -m xvit_edge.bench.accuracy --quantize MODEL` does the same right after training.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..quantize import QuantizeOptions, quantization_benchmark
from .accuracy import tag_error, tagged
from ..cli_types import HelpFormatter, worker_count


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.bench.quantization", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    d = QuantizeOptions()
    p.add_argument("--checkpoint", type=Path, required=True, help="the trained fp32 xvit_edge checkpoint")
    p.add_argument("--data", type=Path, required=True,
                   help="dataset with train/ and val/ (e.g. python -m xvit_edge.data.synthetic --out DIR with the "
                   "sizes the checkpoint was trained on; its provenance records them)")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for quantization[_TAG].json")
    p.add_argument("--tag", default="", help="name the result quantization_TAG.json")
    p.add_argument("--epochs", type=int, default=d.epochs, help="QAT fine-tuning epochs")
    p.add_argument("--lr", type=float, default=d.lr, help="QAT peak learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per batch")
    p.add_argument("--calib-batches", type=int, default=d.calib_batches, help="PTQ calibration batches")
    p.add_argument("--workers", type=worker_count, default=d.workers, help="data-loading processes")
    p.add_argument("--seed", type=int, default=d.seed, help="shuffling and augmentation seed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if tag_error(args.tag):
        print(f"error: {tag_error(args.tag)}", file=sys.stderr)
        return 2
    for path, what in ((args.checkpoint, "checkpoint"), (args.data, "data folder")):
        if not path.exists():
            print(f"error: {what} {path} does not exist", file=sys.stderr)
            return 2
    options = QuantizeOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                              calib_batches=args.calib_batches, workers=args.workers, seed=args.seed)
    out = args.out / f"{tagged('quantization', args.tag)}.json"
    try:
        q = quantization_benchmark(args.checkpoint, args.data, out, options,
                                   source=f", `{args.checkpoint.name}`, on `{args.data.name}`")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"fp32 {100 * q['fp32']['top1']:.1f}%, PTQ int8 {100 * q['ptq']['top1']:.1f}% ({q['ptq']['sqnr_db']:.1f} dB), "
          f"QAT int8 {100 * q['qat']['top1']:.1f}% ({q['qat']['sqnr_db']:.1f} dB); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
