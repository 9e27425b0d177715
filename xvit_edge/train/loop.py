"""Fine-tuning X-ViT on the user's videos: one process or many (DDP through torchrun).

AdamW with a linear warm-up then cosine decay (per step), label smoothing, clip-consistent augmentation,
evaluation every epoch, resumable checkpoints in our format (`last.pt`, `best.pt`), a tqdm progress bar, a
JSON history and a training-curve PNG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..config import Preprocessing, get_config
from ..evaluate import clip_scores
from ..files import AtomicOutput, OutputError, printable, refuse_clobbering, write_text_atomic
from ..model import XViT
from ..model.init import SCRATCH_INITS, mimetic_init_
from ..model.weights import Checkpoint, load_checkpoint, load_pretrained, save_checkpoint
from . import distributed
from .reversal import partner_table, resolve_pairs, with_time_reversed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in every checkpoint so a run can be resumed or reproduced."""

    train_data: str
    val_data: str | None = None
    out: str = "runs/xvit"
    preset: str = "xvit_edge_tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # timm / official / our checkpoint to start from; None: from scratch
    scratch_init: str = "mimetic"  # from scratch: "mimetic" (attention starts local, see model/init.py) or "timm"
    resume: str | None = None
    epochs: int = 30
    batch_size: int = 8
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    sampling: str = "segment"
    stride: int = 2
    scale_min: float = 0.7
    flip: bool = False
    # classes that are each other's time reversal, trained as contrasting pairs (train/reversal.py):
    # "auto" (the pairs in the data's meta.json), "none", or "a:b,c:d"
    reverse_pairs: str = "auto"
    # curriculum: before epoch 1, `focus_epochs` passes over the clips of these classes only (all classes stay
    # in the head); a pair that stays at chance among many classes can be learned alone first (README)
    focus: tuple[str, ...] = ()
    focus_epochs: int = 0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    workers: int = 2
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke tests, profiling)
    device: str | None = None

    def __post_init__(self) -> None:
        # a focus list without passes (or passes without a list) would silently train without the curriculum
        if self.focus_epochs < 0 or bool(self.focus) != (self.focus_epochs > 0):
            raise ValueError(f"focus={self.focus!r} and focus_epochs={self.focus_epochs} go together: name the "
                             "classes to train alone first and how many passes (>= 1) over their clips, or neither")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` (per optimizer step)."""
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and embeddings (1-D tensors and position/class tokens)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("_token", "_embed")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_model(cfg: TrainConfig, num_classes: int) -> tuple[XViT, Preprocessing]:
    """The preset with the dataset's class count, its backbone initialised from `cfg.init` when given, else
    from scratch with `cfg.scratch_init`."""
    if cfg.scratch_init not in SCRATCH_INITS:
        raise ValueError(f"scratch_init must be one of {SCRATCH_INITS}, got {cfg.scratch_init!r}")
    config = get_config(cfg.preset, num_classes=num_classes, **cfg.model_overrides)
    model = XViT(config)
    pre = Preprocessing.for_size(config.img_size, mean=cfg.mean, std=cfg.std)
    if cfg.init:
        log.info(load_pretrained(model, cfg.init).summary())
    elif cfg.scratch_init == "mimetic":
        mimetic_init_(model)
    return model, pre


def make_loader(dataset: torch.utils.data.Dataset, cfg: TrainConfig, info: distributed.DistInfo, train: bool,
                epoch_seed: int = 0) -> DataLoader:
    from ..data.datasets import collate_skip_bad

    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=train, seed=cfg.seed,
                                 drop_last=False) if info.enabled else None
    generator = torch.Generator().manual_seed(cfg.seed + epoch_seed)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=cfg.workers, collate_fn=collate_skip_bad, generator=generator,
                      persistent_workers=False, drop_last=False)


def clip_dataset(cfg: TrainConfig, samples: list[tuple[str, int]], labels: list[str], frames: int,
                 pre: Preprocessing, train: bool) -> torch.utils.data.Dataset:
    """The clip dataset of `samples` with the run's frame sampling; `train` adds the random frame draws and
    crop of training, otherwise clips are centre views (validation, calibration)."""
    from ..data.datasets import VideoClipDataset

    if train:
        return VideoClipDataset(samples, labels, frames, pre, train=True, sampling=cfg.sampling, stride=cfg.stride,
                                scale_min=cfg.scale_min, flip=cfg.flip, seed=cfg.seed)
    return VideoClipDataset(samples, labels, frames, pre, train=False, sampling=cfg.sampling, stride=cfg.stride)


def focus_subset(train_set: torch.utils.data.Dataset, samples: list, labels: list[str],
                 focus: tuple[str, ...]) -> torch.utils.data.Subset:
    """The clips of `train_set` whose class is in `focus` (the focus phase's data)."""
    unknown = sorted(set(focus) - set(labels))
    if not focus or unknown:
        raise ValueError(f"focus classes {unknown or '(none given)'} are not among the training labels {labels}")
    wanted = {labels.index(name) for name in focus}
    return torch.utils.data.Subset(train_set, [i for i, s in enumerate(samples) if s[1] in wanted])


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, info: distributed.DistInfo) -> dict[str, float]:
    """Top-1 accuracy and mean loss over the loader (summed over ranks); multi-view clips are averaged."""
    model.eval()
    correct = seen = loss_sum = skipped = 0.0
    for batch in loader:
        if batch.clips is None:
            skipped += len(batch.skipped)
            continue
        clips, labels = batch.clips.to(info.device), batch.labels.to(info.device)
        logits = clip_scores(model, clips)  # (B, views, T, 3, H, W): the views' scores averaged
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += labels.numel()
        skipped += len(batch.skipped)
    correct, seen, loss_sum, skipped = distributed.all_reduce_sum([correct, seen, loss_sum, skipped], info)
    return {"top1": correct / max(seen, 1), "loss": loss_sum / max(seen, 1), "clips": seen, "skipped": skipped}


OUTPUT_FILES = ("last.pt", "best.pt", "history.json", "training_curve.png")  # what a run writes in `out`


def check_out(cfg: TrainConfig) -> Path:
    """`cfg.out` as a Path, refused (OutputError) when it is a file, or when a file a run writes there is one
    of the run's inputs (training or validation list, `init`). Resuming replaces the run's own last.pt and
    best.pt: that is what it is for."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {printable(out)} is a file; name a folder for last.pt, best.pt and history.json")
    inputs = {"--train-data": cfg.train_data, "--val-data": cfg.val_data, "--init": cfg.init}
    for name in OUTPUT_FILES:
        refuse_clobbering({"--out": out / name}, inputs)
    return out


def resume_from(path: str) -> tuple[XViT, Checkpoint]:
    """The model and metadata of a checkpoint that training wrote, with its training state; a ValueError
    naming what is missing otherwise."""
    model, meta = load_checkpoint(path)
    missing = [key for key in ("train_state", "optimizer", "train_config") if key not in meta.extra]
    if missing:
        raise ValueError(f"{printable(path)}: no training state to resume ({', '.join(missing)} missing): --resume "
                         "takes the last.pt of a python -m xvit_edge.train run; to start a new run from these "
                         f"weights use --init {printable(path)}")
    return model, meta


def training_samples(cfg: TrainConfig, labels: list[str] | None) -> tuple[list[tuple[str, int]], list[str]]:
    """The training clips and labels; with `labels` (a resumed run's) the data's classes must be exactly those,
    or clips would be trained under another class's label. A class without clips is refused either way: the
    head would have an output that training never sees."""
    from ..data.datasets import empty_classes, load_samples

    samples, found = load_samples(cfg.train_data)
    data = printable(cfg.train_data)
    if labels is not None:
        added, gone = sorted(set(found) - set(labels)), sorted(set(labels) - set(found))
        if added or gone:
            diff = "; ".join(part for part in (f"not in the checkpoint: {added}" if added else "",
                                               f"missing from the data: {gone}" if gone else "") if part)
            raise ValueError(f"{data}: its classes differ from those of the run being resumed ({printable(cfg.resume)})"
                             f": {diff}. Resume with the data the run was trained on, or start a new run from the "
                             "checkpoint with --init")
        samples = [(path, labels.index(found[y])) for path, y in samples]  # the checkpoint's label order
        found = list(labels)
    empty = empty_classes(samples, found)
    if empty:
        raise ValueError(f"{data}: no training clips for class{'es' if len(empty) > 1 else ''} {empty}: add clips "
                         "to it or remove it (the model would get an output for a class it is never shown)")
    return samples, found


@dataclass
class TrainResult:
    model: XViT  # this rank's model at the end (every rank holds the same weights under DDP)
    state: dict[str, Any]  # epoch, step, history (per-epoch losses, top-1, skipped clips), best_top1


def train(cfg: TrainConfig) -> TrainResult:
    """Run training on this process (one of `torchrun`'s, or alone); checkpoints are written by rank 0."""
    from tqdm import tqdm

    from ..data.datasets import load_samples

    info = distributed.setup(cfg.device)
    try:
        seed_everything(cfg.seed + info.rank)
        out = check_out(cfg)
        state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best_top1": -math.inf}
        if cfg.resume:
            model, meta = resume_from(cfg.resume)
            pre, state = meta.preprocessing, meta.extra["train_state"]
            train_samples, labels = training_samples(cfg, meta.labels)
        else:
            train_samples, labels = training_samples(cfg, None)
            if len(labels) < 2:  # one class: the loss is 0 from the start and the model answers it for anything
                raise ValueError(f"{printable(cfg.train_data)}: {len(labels)} class ({', '.join(labels)}); a "
                                 "classifier needs at least 2")
            model, pre = build_model(cfg, len(labels))
        # best.pt is the best by validation top-1, or without validation data by training loss; a resumed run
        # that changes which must not compare one with the other.
        best_by = "val_top1" if cfg.val_data else "train_loss"
        if state["history"]:
            was = state.get("best_by", "val_top1" if "val_top1" in state["history"][-1] else "train_loss")
            if was != best_by:
                log.warning("best.pt so far was chosen by %s; this run has %s, so best.pt is chosen afresh by %s",
                            was, "validation data" if cfg.val_data else "no validation data", best_by)
                state["best_top1"] = -math.inf
            if state["epoch"] >= cfg.epochs:
                log.warning("%s has already trained %d epochs; raise --epochs to train more",
                            printable(cfg.resume), state["epoch"])
        state["best_by"] = best_by
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        frames = model.config.num_frames
        pairs = resolve_pairs(cfg.reverse_pairs, cfg.train_data, labels)
        partner = partner_table(pairs, labels)
        if pairs:
            log.info("time-reversal pairs (each clip's reversal joins its batch): %s",
                     ", ".join(f"{a}:{b}" for a, b in pairs))
        train_set = clip_dataset(cfg, train_samples, labels, frames, pre, train=True)
        val_set = None
        if cfg.val_data:
            val_samples, _ = load_samples(cfg.val_data, labels=labels)
            val_set = clip_dataset(cfg, val_samples, labels, frames, pre, train=False)
        model.to(info.device)
        ddp = nn.parallel.DistributedDataParallel(model) if info.enabled else model
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
        if cfg.resume:
            optimizer.load_state_dict(meta.extra["optimizer"])
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        def steps_per_pass(dataset: torch.utils.data.Dataset) -> int:
            return math.ceil(len(dataset) / (cfg.batch_size * info.world_size))

        steps_per_epoch = steps_per_pass(train_set)
        focus_set = focus_subset(train_set, train_samples, labels, cfg.focus) if cfg.focus_epochs else None
        focus_steps = steps_per_pass(focus_set) * cfg.focus_epochs if focus_set is not None else 0
        total = focus_steps + steps_per_epoch * cfg.epochs
        warmup = int(cfg.warmup_epochs * steps_per_epoch)

        def one_pass(dataset: torch.utils.data.Dataset, draw: int, desc: str) -> list[float]:
            """One shuffled pass over `dataset` (augmentation draw `draw`); returns [loss sum, clips, skipped]."""
            train_set.epoch = draw  # new augmentation draws every pass, reproducible from the seed
            loader = make_loader(dataset, cfg, info, train=True, epoch_seed=draw)
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(draw)
            ddp.train()
            loss_sum = seen = skipped = 0.0
            bar = tqdm(loader, desc=desc, disable=not info.is_main, leave=False)
            for batch in bar:
                skipped += len(batch.skipped)
                weight = 1.0
                if batch.clips is None:  # every clip of this batch was unreadable
                    if not info.enabled:
                        continue
                    # Under DDP every rank must join each gradient all-reduce, or the others hang:
                    # step on a blank clip whose loss counts zero.
                    cfg_m = model.config
                    batch.clips = torch.zeros(1, cfg_m.num_frames, cfg_m.in_chans, cfg_m.img_size, cfg_m.img_size)
                    batch.labels, weight = torch.zeros(1, dtype=torch.long), 0.0
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(state["step"], total, warmup, cfg)
                clips, target = with_time_reversed(batch.clips.to(info.device), batch.labels.to(info.device), partner)
                loss = criterion(ddp(clips), target) * weight
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {state['step']}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                state["step"] += 1
                loss_sum += loss.item() * target.numel()
                seen += target.numel() * weight
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if cfg.max_steps and state["step"] >= cfg.max_steps:
                    break
            return [loss_sum, seen, skipped]

        def end_epoch(epoch: int, sums: list[float]) -> None:
            """Evaluate, record and checkpoint after `epoch` (0: the focus phase)."""
            loss_sum, seen, skipped = distributed.all_reduce_sum(sums, info)
            record = {"epoch": epoch, "step": state["step"], "train_loss": loss_sum / max(seen, 1),
                      "train_skipped": skipped}
            if skipped:
                log.warning("epoch %d: skipped %d unreadable clips (see the warnings above)", epoch, skipped)
            if not seen:  # every clip unreadable or too short: saving would pass an untrained model for a result
                raise ValueError(f"no training clip could be used ({skipped:.0f} unreadable or shorter than "
                                 f"{frames} frames) in {printable(cfg.train_data)}; nothing was saved")
            if val_set is not None:
                val = evaluate(ddp, make_loader(val_set, cfg, info, train=False), info)
                if not val["clips"]:
                    raise ValueError(f"no validation clip could be used ({val['skipped']:.0f} unreadable or shorter "
                                     f"than {frames} frames) in {printable(cfg.val_data)}; nothing was saved")
                record.update({f"val_{k}": v for k, v in val.items()})
            state["history"].append(record)
            state["epoch"] = epoch
            top1 = record.get("val_top1", -record["train_loss"])
            is_best = top1 > state["best_top1"]
            state["best_top1"] = max(top1, state["best_top1"])
            if is_best:
                state["best_epoch"] = epoch
            if info.is_main:
                log.info("epoch %d%s: %s", epoch, " (focus)" if epoch == 0 else "",
                         ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
                extra = {"train_state": state, "optimizer": optimizer.state_dict(), "train_config": cfg.to_dict()}
                save_checkpoint(out / "last.pt", model, labels, pre, **extra)
                if is_best:
                    save_checkpoint(out / "best.pt", model, labels, pre, **extra)
                write_text_atomic(out / "history.json", json.dumps(state["history"], indent=2))
                plot_history(state["history"], out / "training_curve.png")

        if focus_set is not None and not state["history"]:  # a resumed run has finished its focus phase
            log.info("focus phase: %d passes over the %d clips of %s", cfg.focus_epochs, len(focus_set),
                     ", ".join(cfg.focus))
            sums = [0.0, 0.0, 0.0]
            for k in range(cfg.focus_epochs):  # draws after the main epochs' own, so no pass repeats another's
                if cfg.max_steps and state["step"] >= cfg.max_steps:
                    break
                sums = [a + b for a, b in zip(sums, one_pass(focus_set, cfg.epochs + k,
                                                             f"focus {k + 1}/{cfg.focus_epochs}"))]
            end_epoch(0, sums)
        for epoch in range(state["epoch"], cfg.epochs):
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                break
            end_epoch(epoch + 1, one_pass(train_set, epoch, f"epoch {epoch + 1}/{cfg.epochs}"))
        return TrainResult(model, state)
    finally:
        distributed.cleanup()


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Training loss and validation top-1 per epoch, as a PNG (skipped when matplotlib is missing). A resumed
    run may have validated some epochs and not others: each curve has the epochs that have its value."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'xvit-edge[plot]'); no training curve written")
        return

    def curve(key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
        points = [(h["epoch"], scale * h[key]) for h in history if key in h]
        return [e for e, _ in points], [v for _, v in points]

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*curve("train_loss"), "o-", label="train loss")
    if any("val_loss" in h for h in history):
        ax.plot(*curve("val_loss"), "s-", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("val_top1" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(*curve("val_top1", 100), "g^-", label="val top-1 (%)")
        ax2.set_ylabel("val top-1 (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title("training curve")
    fig.tight_layout()
    try:
        with AtomicOutput(path) as png:
            fig.savefig(png.tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
