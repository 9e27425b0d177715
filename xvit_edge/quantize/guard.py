"""Keeping bad batches out of the quantization ranges.

Observers record running minima and maxima: one NaN or inf that reaches them is baked into every scale after
it (a NaN min/max never recovers, an inf makes a scale useless), and the observers themselves then fail
(`torch.histc: range ... is not finite`, `min nan should be less than max nan`). A batch whose inputs are not
finite is refused before the forward pass; for the rest, the observer state is snapshotted before the pass
and put back when the batch turns out bad after all: its outputs or loss are not finite, or an observer
failed on a non-finite value inside the model (an overflow from finite but huge inputs). Each skip is logged
and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from .scheme import quant_modules

log = logging.getLogger(__name__)

T = TypeVar("T")
State = dict[str, dict[str, torch.Tensor]]
# What observers say when a non-finite value reaches them (histc, min/max checks, qparams).
_NONFINITE_WORDS = ("nan", "inf", "finite")


class ObserverGuard:
    """Snapshots and restores the observer / fake-quant buffers of a prepared graph; counts skipped batches."""

    def __init__(self, prepared: nn.Module) -> None:
        self.modules = quant_modules(prepared)
        self.skipped: list[str] = []  # one reason per skipped batch

    def snapshot(self) -> State:
        return {name: {key: buf.detach().clone() for key, buf in m.named_buffers()}
                for name, m in self.modules.items()}

    def restore(self, state: State) -> None:
        for name, m in self.modules.items():
            for key, saved in state[name].items():
                owner, _, attr = key.rpartition(".")
                target = m.get_submodule(owner) if owner else m
                # Assign, not copy_: a per-channel observer's buffers change shape on their first batch.
                setattr(target, attr, saved.clone())

    def state_is_finite(self) -> bool:
        return all(torch.isfinite(buf).all() for m in self.modules.values() for buf in m.buffers()
                   if buf.is_floating_point())

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)
        log.warning("skipped a batch (%d so far): %s; the quantization ranges were left as they were",
                    len(self.skipped), reason)

    def run(self, clips: torch.Tensor, step: Callable[[torch.Tensor], T], where: str = "batch") -> T | None:
        """`step(clips)` (a forward pass, or forward and loss), or None when the batch was bad: its inputs or
        its outputs (every tensor `step` returns) are not finite, or an observer failed on a non-finite value.
        Then the observers are exactly as they were before it, and the skip is logged and counted."""
        if not torch.isfinite(clips).all():
            bad = int((~torch.isfinite(clips)).sum())
            self.skip(f"{where}: {bad} non-finite input values")
            return None
        saved = self.snapshot()
        try:
            out = step(clips)
        except (RuntimeError, AssertionError, ValueError) as e:
            poisoned = not self.state_is_finite()
            self.restore(saved)
            if poisoned or any(w in str(e).lower() for w in _NONFINITE_WORDS):
                self.skip(f"{where}: a non-finite value inside the model ({str(e).splitlines()[0][:120]})")
                return None
            raise  # a real error, not a bad batch
        outputs = out if isinstance(out, tuple) else (out,)
        if not all(torch.isfinite(t).all() for t in outputs if isinstance(t, torch.Tensor)):
            self.restore(saved)
            self.skip(f"{where}: non-finite outputs")
            return None
        return out
