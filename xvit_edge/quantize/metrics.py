"""How close the int8 model is to the float one: SQNR of the logits, top-1 agreement, accuracy on labelled
clips. Every model sees the same clips in one pass over the loader (decoding video costs more than the
tiny models it feeds)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..export.verify import sqnr_db

log = logging.getLogger(__name__)


@torch.no_grad()
def collect_logits(models: dict[str, nn.Module], loader, max_batches: int | None = None,
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
    """Logits of every model on the loader's clips (`Batch`es from `collate_skip_bad`), their labels, and
    how many clips were left out (unreadable files; clips with non-finite values)."""
    logits: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    labels, skipped = [], 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        skipped += len(batch.skipped)
        if batch.clips is None:
            continue
        finite = torch.isfinite(batch.clips.flatten(1)).all(dim=1)
        skipped += int((~finite).sum())
        if not finite.any():
            continue
        clips = batch.clips[finite]
        for name, model in models.items():
            logits[name].append(model(clips).float())
        labels.append(batch.labels[finite])
    if not labels:
        raise ValueError("no usable clip to evaluate on (every clip was unreadable or not finite)")
    return {k: torch.cat(v) for k, v in logits.items()}, torch.cat(labels), skipped


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def agreement(reference: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """SQNR (dB) of `test` against `reference` logits, and how often their top-1 classes agree."""
    return {"sqnr_db": sqnr_db(reference, test),
            "top1_agreement": float((reference.argmax(-1) == test.argmax(-1)).float().mean())}


def quality(float_logits: torch.Tensor, int8_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """What quantization cost: SQNR and agreement of int8 against fp32, and both accuracies."""
    return {**agreement(float_logits, int8_logits), "fp32_top1": top1(float_logits, labels),
            "int8_top1": top1(int8_logits, labels), "clips": int(labels.numel())}


def log_quality(title: str, q: dict[str, float]) -> None:
    log.info("%s: SQNR %.1f dB, top-1 agreement %.1f%%, top-1 fp32 %.1f%% -> int8 %.1f%% (%d clips)", title,
             q["sqnr_db"], 100 * q["top1_agreement"], 100 * q["fp32_top1"], 100 * q["int8_top1"], q["clips"])
