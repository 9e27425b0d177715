"""Quantization-aware fine-tuning: the fake-quantized graph trains with AdamW at a small learning rate, so
the weights adapt to int8 rounding while the observers follow the activation ranges.

The optimizer, the learning-rate schedule, the data loaders and the skipping of unreadable clips are the
training loop's own (`xvit_edge.train.loop`); only the step differs, because every batch goes through the
`ObserverGuard`.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..train.distributed import DistInfo
from ..train.loop import TrainConfig, lr_at, make_loader, param_groups
from .convert import freeze, unfreeze
from .guard import ObserverGuard
from .metrics import collect_logits, top1

log = logging.getLogger(__name__)


def qat_step(prepared: torch.fx.GraphModule, optimizer: torch.optim.Optimizer, clips: torch.Tensor,
             labels: torch.Tensor, criterion: nn.Module, guard: ObserverGuard, grad_clip: float = 1.0,
             where: str = "QAT step") -> float | None:
    """One optimizer step on a batch; returns the loss, or None when the batch was skipped (bad inputs,
    outputs or loss: observers restored by the guard; bad gradients: weights not updated)."""
    loss = guard.run(clips, lambda x: criterion(prepared(x), labels), where)
    if loss is None:
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        guard.skipped.append(f"{where}: non-finite gradients")
        log.warning("%s: non-finite gradients; the weights were not updated", where)
        return None
    optimizer.step()
    return loss.item()


def make_optimizer(prepared: torch.fx.GraphModule, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(prepared, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))


def fine_tune(prepared: torch.fx.GraphModule, train_set: torch.utils.data.Dataset,
              val_set: torch.utils.data.Dataset | None, cfg: TrainConfig, guard: ObserverGuard,
              eval_batches: int | None = None) -> list[dict]:
    """QAT for `cfg.epochs` epochs (or `cfg.max_steps` steps) on `train_set`; top-1 of the fake-quantized
    model on `val_set` (at most `eval_batches` batches) after every epoch. Returns the per-epoch history."""
    from tqdm import tqdm

    info = DistInfo()  # one process: QAT fine-tunes briefly, on the CPU
    optimizer = make_optimizer(prepared, cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total, warmup = steps_per_epoch * cfg.epochs, int(cfg.warmup_epochs * steps_per_epoch)
    step, history = 0, []
    for epoch in range(cfg.epochs):
        train_set.set_epoch(epoch)
        unfreeze(prepared)
        losses, unreadable, skipped_before = [], 0, len(guard.skipped)
        bar = tqdm(make_loader(train_set, cfg, info, train=True, epoch_seed=epoch),
                   desc=f"QAT epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for batch in bar:
            unreadable += len(batch.skipped)
            if batch.clips is None:
                continue
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total, warmup, cfg)
            loss = qat_step(prepared, optimizer, batch.clips, batch.labels, criterion, guard, cfg.grad_clip,
                            where=f"QAT step {step}")
            step += 1
            if loss is not None:
                losses.append(loss)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        record = {"epoch": epoch + 1, "step": step, "train_loss": sum(losses) / max(len(losses), 1),
                  "skipped_batches": len(guard.skipped) - skipped_before, "unreadable_clips": unreadable}
        if val_set is not None:
            freeze(prepared)  # evaluation must not move the ranges
            logits, labels, _ = collect_logits({"qat": prepared}, make_loader(val_set, cfg, info, train=False),
                                              eval_batches)
            record["val_top1_fake_quant"] = top1(logits["qat"], labels)
        history.append(record)
        log.info("QAT epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if cfg.max_steps and step >= cfg.max_steps:
            break
    freeze(prepared)
    return history
