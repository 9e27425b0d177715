"""Post-training quantization: observe activation ranges on a few batches, nothing trained."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..model import XViT
from .convert import QuantizedModel, convert
from .guard import ObserverGuard
from .scheme import DEFAULT_SCHEME, prepare

log = logging.getLogger(__name__)


@torch.no_grad()
def calibrate(prepared: Callable[[torch.Tensor], Any], batches: Iterable[torch.Tensor | None], max_batches: int,
              guard: ObserverGuard | None = None, keep: list[torch.Tensor] | None = None,
              what: str = "calibration") -> int:
    """Run up to `max_batches` good batches of clips through the observers of `prepared` (a prepared graph, or
    a module running one, with `guard` watching that graph); returns how many were used (appended to `keep`
    when given). Bad batches (see `ObserverGuard`) are skipped and do not count; None stands for a batch of
    unreadable files. Raises ValueError when no batch was usable. `what` names the pass in messages."""
    from tqdm import tqdm

    guard = guard or ObserverGuard(prepared)
    used = 0
    # A calibration batch of a small model takes seconds; the bar shows on a terminal only (disable=None).
    with tqdm(total=max_batches, desc=what, unit="batch", leave=False, disable=None) as bar:
        for i, clips in enumerate(batches):
            if used >= max_batches:
                break
            if clips is None:
                continue
            if guard.run(clips, prepared, where=f"{what} batch {i}") is not None:
                used += 1
                bar.update()
                if keep is not None:
                    keep.append(clips)
    if not used:
        raise ValueError(f"no usable calibration batch ({len(guard.skipped)} skipped); the ranges would be empty")
    log.info("%s: %d batches used (%d skipped)", what, used, len(guard.skipped))
    return used


def quantize_ptq(model: XViT, batches: Iterable[torch.Tensor | None], max_batches: int = 8,
                 stream: bool = True, scheme: str = DEFAULT_SCHEME) -> QuantizedModel:
    """PTQ of `model` on batches of clips `(B, T, 3, H, W)`: prepare, calibrate, convert; a causal model's
    streaming step too, on the same clips (see `stream`), unless `stream=False` (clip mode only). The
    dynamic `scheme` has no activation ranges, but its weight observers still need the batches' pass."""
    from .stream import quantize_step

    prepared = prepare(model, "ptq", scheme=scheme)
    guard = ObserverGuard(prepared)
    used: list[torch.Tensor] = []
    calibrate(prepared, batches, max_batches, guard, keep=used)
    result = convert(prepared, model, "ptq", scheme)
    result.skipped = list(guard.skipped)
    if stream:
        quantize_step(result, used, max_batches)
    return result
