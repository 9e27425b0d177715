"""Score a checkpoint on labelled clips: `python -m xvit_edge.evaluate --checkpoint CKPT --data DIR`.

What the field reports for an action-recognition model: top-1 over all clips and per class, the most frequent
confusions, and, for classes that are each other's time reversal (`open` / `close`; the synthetic benchmark's
pairs), whether the model tells the two apart. Test-time views as the field uses them: `clips` temporal clips
x `crops` spatial crops per video, their softmax scores averaged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .cli_types import LOG_LEVELS, HelpFormatter, positive_int, thread_count, worker_count
from .files import OVERWRITE_HELP
from .signals import terminate_as_interrupt

log = logging.getLogger(__name__)


def clip_scores(model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """Class scores of a batch: `(B, T, 3, H, W)` -> the model's logits; `(B, views, T, 3, H, W)` -> the log of
    the views' mean softmax (each view weighs the same, whatever the scale of its logits)."""
    if clips.dim() == 6:
        b, v = clips.shape[:2]
        return model(clips.flatten(0, 1)).view(b, v, -1).softmax(-1).mean(1).log()
    return model(clips)


@torch.no_grad()
def score(model: nn.Module, samples: list[tuple[str, int]], labels: list[str], preprocessing, *,
          pairs: list[tuple[str, str]] = (), clips: int = 1, crops: int = 1, sampling: str = "segment",
          stride: int = 2, batch_size: int = 16, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Top-1 (all clips and per class), the commonest confusions and, with `pairs`, direction accuracy (a
    paired clip's class scored above its reversal partner) and pair accuracy (the prediction falls in the
    right pair) of `model` on `samples`. Unusable files are skipped and counted, never scored."""
    from torch.utils.data import DataLoader

    from .data.datasets import VideoClipDataset, collate_skip_bad
    from .train.reversal import partner_table

    dataset = VideoClipDataset(samples, labels, model.config.num_frames, preprocessing, train=False,
                               sampling=sampling, stride=stride, num_clips=clips, num_crops=crops)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad)
    model.eval()
    scores, targets, skipped = [], [], []  # skipped: the paths of unusable files
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
        skipped += batch.skipped
        if batch.clips is not None:
            scores.append(clip_scores(model, batch.clips))
            targets.append(batch.labels)
    result: dict[str, Any] = {"clips": sum(len(t) for t in targets), "skipped": skipped,
                              "views": {"clips": clips, "crops": crops}}
    if not targets:
        raise ValueError("no clip could be scored: every file was skipped (see the warnings above)")
    scores, targets = torch.cat(scores), torch.cat(targets)
    pred = scores.argmax(-1)
    result["top1"] = (pred == targets).float().mean().item()
    result["per_class_top1"] = {name: (pred[targets == i] == i).float().mean().item()
                                for i, name in enumerate(labels) if (targets == i).any()}
    confusions = Counter((labels[t], labels[p]) for t, p in zip(targets.tolist(), pred.tolist()) if t != p)
    result["confusions"] = [[t, p, n] for (t, p), n in confusions.most_common(10)]
    partner = partner_table(list(pairs), labels)
    paired = partner[targets] >= 0
    if paired.any():  # classes without a partner have no direction to get right
        rows, t = torch.nonzero(paired).squeeze(1), targets[paired]
        result["direction_accuracy"] = (scores[rows, t] > scores[rows, partner[t]]).float().mean().item()
        pair_of = torch.where(partner >= 0, torch.minimum(torch.arange(len(labels)), partner),
                              torch.arange(len(labels)))  # one id per pair; an unpaired class is its own
        result["pair_accuracy"] = (pair_of[pred[paired]] == pair_of[t]).float().mean().item()
        result["paired_clips"] = int(paired.sum())
    return result


def report(result: dict[str, Any]) -> str:
    """The scores as a few lines of text."""
    v = result["views"]
    lines = [f"top-1 {100 * result['top1']:.1f}% on {result['clips']} clips ({v['clips']} temporal clip(s) x "
             f"{v['crops']} crop(s) each)" + (f"; {len(result['skipped'])} unusable file(s) skipped"
                                              if result["skipped"] else "")]
    if "direction_accuracy" in result:
        lines.append(f"time-reversal pairs ({result['paired_clips']} clips): direction "
                     f"{100 * result['direction_accuracy']:.1f}%, right pair {100 * result['pair_accuracy']:.1f}%")
    lines += [f"  {name:<24} {100 * acc:5.1f}%" for name, acc in result["per_class_top1"].items()]
    if result["confusions"]:
        lines.append("commonest confusions: " + ", ".join(f"{t} -> {p} ({n})" for t, p, n in result["confusions"]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.evaluate",
                                description="Score a trained checkpoint on labelled clips (top-1, per class, "
                                "confusions, time-reversal pairs), with test-time views.",
                                formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an xvit_edge checkpoint (from training, or a shipped one)")
    p.add_argument("--data", required=True,
                   help="clips to score: a folder with one sub-folder per class, or a CSV/txt list of 'path,label'; "
                   "every class must be one of the checkpoint's labels")
    p.add_argument("--clips", type=positive_int, default=1,
                   help="temporal clips per video, spread over it (test-time views)")
    p.add_argument("--crops", type=int, default=1, choices=[1, 3],
                   help="spatial crops per clip: 1 (centre) or 3 (along the longer side)")
    p.add_argument("--pairs", default="auto", metavar="auto|none|A:B,C:D",
                   help="classes that are each other's time reversal, scored for direction: 'auto' reads the "
                   "meta.json beside --data (the synthetic generator writes one), 'none', or explicit pairs")
    p.add_argument("--sampling", choices=["segment", "uniform"],
                   help="frame sampling (default: the one the checkpoint was trained with, else segment)")
    p.add_argument("--stride", type=positive_int,
                   help="frame stride for --sampling uniform (default: as trained, else 2)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="videos per forward pass")
    p.add_argument("--workers", type=worker_count, default=0, help="data-loading processes")
    p.add_argument("--threads", type=thread_count, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, help="also write the scores to this JSON file (replaced only once complete; "
                   "never one of the inputs)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS, help="logging level")
    return p


def _check_json(path: Path, checkpoint: str, data: str, samples: list[tuple[str, int]], overwrite: bool) -> None:
    """--json must be writable, none of the files evaluation reads, and new unless `overwrite` (an OutputError
    otherwise)."""
    from .files import check_output, refuse_clobbering, refuse_existing
    from .train.reversal import meta_files

    check_output(path, "--json", create_folders=True)
    beside, above = meta_files(data)  # --pairs auto reads them
    refuse_clobbering({"--json": path}, {"--checkpoint": checkpoint, "--data": data,
                                         "the meta.json beside --data": beside, "the meta.json above --data": above})
    if path.exists():  # only an existing file can be one of the clips
        for clip, _ in samples:
            refuse_clobbering({"--json": path}, {"a clip of --data": clip})
    refuse_existing({"--json": path}, overwrite)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    terminate_as_interrupt()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    from .data.datasets import load_samples
    from .files import printable, write_text_atomic
    from .model.weights import load_checkpoint
    from .train.reversal import resolve_pairs

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, meta = load_checkpoint(args.checkpoint)
        trained = meta.extra.get("train_config", {})
        samples, _ = load_samples(args.data, labels=meta.labels)
        if not samples:
            raise ValueError(f"{printable(args.data)}: no clips found")
        if args.json:
            _check_json(args.json, args.checkpoint, args.data, samples, args.overwrite)
        pairs = resolve_pairs(args.pairs, args.data, meta.labels)
        result = score(model, samples, meta.labels, meta.preprocessing, pairs=pairs, clips=args.clips,
                       crops=args.crops, sampling=args.sampling or trained.get("sampling", "segment"),
                       stride=args.stride or trained.get("stride", 2), batch_size=args.batch_size,
                       workers=args.workers, progress=True)
        result["checkpoint"], result["data"] = str(args.checkpoint), str(args.data)
        if args.json:  # JSON escapes a name's undecodable bytes (\udcXX), so the file is always valid
            write_text_atomic(args.json, json.dumps(result, indent=1))
    except (OSError, ValueError) as e:  # CheckpointError, VideoError, OutputError are ValueErrors; a full disk
        print(f"error: {e}", file=sys.stderr)  # leaves no half-written --json either
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    print(printable(report(result)))  # labels from an older checkpoint may carry undecodable bytes
    if args.json:
        print(f"wrote the scores to {printable(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
