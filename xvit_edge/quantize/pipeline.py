"""A checkpoint and a dataset in, a quantized checkpoint and its quality figures out (what the CLI and the
benchmark run). The data comes through the training pipeline: the same sample lists, clip datasets, frame
sampling, loaders and skipping of unreadable files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Preprocessing
from ..model import XViT
from ..model.weights import load_checkpoint
from ..train.distributed import DistInfo
from ..train.loop import TrainConfig, clip_dataset, make_loader
from .calibrate import calibrate
from .checkpoint import is_quantized, save_quantized
from .convert import QuantizedModel, convert
from .guard import ObserverGuard
from .metrics import agreement, collect_logits, log_quality, quality
from .qat import fine_tune
from .scheme import DEFAULT_SCHEME, FLOAT_OPS, MODES, check_mode, check_scheme, prepare
from .stream import StreamedClips, quantize_step

log = logging.getLogger(__name__)


@dataclass
class QuantizeOptions:
    """How to calibrate (PTQ) or fine-tune (QAT)."""

    epochs: int = 1  # QAT epochs over the training split
    lr: float = 5e-5  # QAT peak AdamW learning rate (cosine decay to lr / 100): a fine-tune, not a training
    batch_size: int = 8
    calib_batches: int = 8  # PTQ, and a causal model's streaming step: batches of training clips (centre views) the observers see
    max_steps: int | None = None  # QAT: stop after this many steps (smoke tests)
    eval_batches: int | None = None  # evaluate on at most this many validation batches (None: all)
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    workers: int = 2
    seed: int = 0
    scheme: str = DEFAULT_SCHEME  # activations: static (calibrated ranges) or dynamic (see `scheme`)

    def check(self) -> None:
        check_scheme(self.scheme)
        for name in ("epochs", "batch_size", "calib_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("max_steps", "eval_batches"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


def split_paths(data_dir: str | os.PathLike) -> tuple[Path, Path]:
    """`DIR/train` and `DIR/val` (folders with a sub-folder per class, or `path,label` list files, as
    `python -m xvit_edge.data.synthetic` writes them and `python -m xvit_edge.train` reads them)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found = []
    for split in ("train", "val"):
        candidates = [root / split, root / f"{split}.csv", root / f"{split}.txt"]
        path = next((c for c in candidates if c.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{root}: no '{split}' split (expected {split}/ with a folder per class, "
                                    f"or {split}.csv / {split}.txt)")
        found.append(path)
    return found[0], found[1]


@dataclass
class Data:
    cfg: TrainConfig  # the loaders' settings, in the training loop's terms
    train_set: torch.utils.data.Dataset  # augmented training clips (QAT)
    calib_set: torch.utils.data.Dataset  # training clips as centre views (PTQ calibration)
    val_set: torch.utils.data.Dataset  # held-out clips (evaluation)


def load_data(data_dir: str | os.PathLike, labels: list[str], preprocessing: Preprocessing, frames: int,
              options: QuantizeOptions, train_config: dict[str, Any] | None = None) -> Data:
    """Datasets of both splits, labelled in the checkpoint's label order, sampled as the checkpoint was
    trained (`train_config`, which `python -m xvit_edge.train` stores in its checkpoints) when known."""
    from ..data.datasets import load_samples

    train_path, val_path = split_paths(data_dir)
    tc = train_config or {}
    defaults = TrainConfig(train_data="")
    cfg = TrainConfig(
        train_data=str(train_path), val_data=str(val_path), epochs=options.epochs, batch_size=options.batch_size,
        lr=options.lr, min_lr=options.lr / 100, warmup_epochs=0.0, weight_decay=options.weight_decay,
        label_smoothing=options.label_smoothing, grad_clip=options.grad_clip,
        sampling=tc.get("sampling", defaults.sampling), stride=tc.get("stride", defaults.stride),
        scale_min=tc.get("scale_min", defaults.scale_min), flip=tc.get("flip", defaults.flip),
        workers=options.workers, seed=options.seed, max_steps=options.max_steps, device="cpu")
    train_samples, _ = load_samples(train_path, labels=labels)
    val_samples, _ = load_samples(val_path, labels=labels)
    log.info("data: %d training clips, %d held-out clips, %d classes, %s sampling", len(train_samples),
             len(val_samples), len(labels), cfg.sampling)
    return Data(cfg, clip_dataset(cfg, train_samples, labels, frames, preprocessing, train=True),
                clip_dataset(cfg, train_samples, labels, frames, preprocessing, train=False),
                clip_dataset(cfg, val_samples, labels, frames, preprocessing, train=False))


def quantize(model: XViT, data: Data, mode: str, options: QuantizeOptions,
             float_ops: tuple = FLOAT_OPS) -> QuantizedModel:
    """PTQ (calibrate) or QAT (fine-tune) `model`, convert, and measure int8 against fp32 on the held-out
    split; the figures are logged and kept in `metrics`. `float_ops`: see `scheme.FLOAT_OPS` (a checkpoint
    can only be saved with the default)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    torch.manual_seed(options.seed)
    info = DistInfo()
    model = model.eval()
    prepared = prepare(model, mode, float_ops, options.scheme)
    guard = ObserverGuard(prepared)
    history: list[dict] = []
    calibration: list[torch.Tensor] = []  # PTQ's calibration clips, which the streaming step reuses
    if mode == "ptq":
        loader = make_loader(data.calib_set, data.cfg, info, train=True)  # shuffled: every class is seen
        calibrate(prepared, (b.clips for b in loader), options.calib_batches, guard, keep=calibration)
    else:
        history = fine_tune(prepared, data.train_set, data.val_set, data.cfg, guard, options.eval_batches)
    q = convert(prepared, model, mode, options.scheme)
    q.skipped = list(guard.skipped)
    # A causal model's streaming step gets its own calibration, on the fine-tuned weights after QAT. It follows
    # the default scheme, the only one a checkpoint saves, so the float-op ablations leave it out.
    if float_ops == FLOAT_OPS:
        quantize_step(q, calibration or (b.clips for b in make_loader(data.calib_set, data.cfg, info, train=True)),
                      options.calib_batches)
    models = {"fp32": model, "int8": q.converted}
    if mode == "qat":
        models["fake_quant"] = q.prepared
    if q.step_converted is not None:
        models["stream_int8"] = StreamedClips(q.step_converted, q.config)
    logits, labels, unusable = collect_logits(models, make_loader(data.val_set, data.cfg, info, train=False),
                                              options.eval_batches)
    q.metrics = {"val": quality(logits["fp32"], logits["int8"], labels), "val_unusable_clips": unusable,
                 "skipped_batches": list(q.skipped), "history": history}
    log_quality(f"{mode.upper()} int8 vs fp32 on the held-out split", q.metrics["val"])
    if q.step_converted is not None:  # the int8 step streams each clip from a fresh state
        q.metrics["stream_val"] = quality(logits["fp32"], logits["stream_int8"], labels)
        log_quality("int8 streaming step vs fp32 on the held-out split", q.metrics["stream_val"])
    if mode == "qat":
        q.metrics["int8_vs_fake_quant"] = agreement(logits["fake_quant"], logits["int8"])
        log.info("converted int8 vs the fake-quantized model: SQNR %.1f dB",
                 q.metrics["int8_vs_fake_quant"]["sqnr_db"])
    if q.skipped:
        log.warning("%d batches were skipped (non-finite values): %s", len(q.skipped), q.skipped[:3])
    return q


def quantize_checkpoint(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, mode: str,
                        out: str | os.PathLike | None = None, options: QuantizeOptions | None = None,
                        ) -> QuantizedModel:
    """Quantize the checkpoint's model on `data_dir` (`train/` and `val/`); write the quantized checkpoint
    to `out` when given."""
    options = options or QuantizeOptions()
    options.check()
    check_mode(mode, options.scheme)
    model, meta = load_checkpoint(checkpoint)
    if is_quantized(meta.extra):
        log.info("%s is already quantized: quantizing its float weights again", checkpoint)
    data = load_data(data_dir, meta.labels, meta.preprocessing, meta.config.num_frames, options,
                     meta.extra.get("train_config"))
    q = quantize(model, data, mode, options)
    if out is not None:
        save_quantized(out, q, meta.labels, meta.preprocessing, source_checkpoint=str(checkpoint))
        log.info("wrote %s", out)
    return q
