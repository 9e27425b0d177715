"""Space-time mixing of keys and values (Bulat et al. 2021, Eqs. 7-10), as two small pure functions.

A key (or value) of token s at frame t is rebuilt channel group by channel group: group g is copied from the
same token s at frame t + offsets[g], the remaining channels stay at frame t, and a frame outside the clip
contributes zeros (no wrap-around). The channels are only moved, so the attention that follows costs
exactly what spatial-only attention costs.

Written with slicing, zero padding and concatenation only: no torch.roll, no in-place index writes, no
data-dependent shapes, so the same code exports to ExecuTorch, Core ML and ONNX unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def shift_time(x: torch.Tensor, offset: int) -> torch.Tensor:
    """`out[:, t] = x[:, t + offset]` where `0 <= t + offset < T`, zeros elsewhere; x is `(B, T, ...)`."""
    if offset == 0:
        return x
    num_frames = x.shape[1]
    if abs(offset) >= num_frames:  # the whole group comes from outside the clip
        return torch.zeros_like(x)
    # F.pad lists (left, right) pairs from the last axis backwards; only the time axis (1) is padded.
    keep = [0, 0] * (x.dim() - 2)
    if offset > 0:
        return F.pad(x[:, offset:], keep + [0, offset])
    return F.pad(x[:, : num_frames + offset], keep + [-offset, 0])


def mix_time(x: torch.Tensor, fold: int, offsets: Sequence[int]) -> torch.Tensor:
    """Mix channel groups of `x` `(B, T, ..., C)` from neighbouring frames.

    Channels `[g * fold, (g + 1) * fold)` come from frame `t + offsets[g]`; the rest stay at frame t.
    With offsets (1, -1) this is the paper's tw=1 window (and TSM's shift); with (-1, -2) it is causal.
    """
    parts = [shift_time(x[..., g * fold : (g + 1) * fold], off) for g, off in enumerate(offsets)]
    parts.append(x[..., len(offsets) * fold :])
    return torch.cat(parts, dim=-1)


def borrowed(x: torch.Tensor, fold: int, offsets: Sequence[int]) -> torch.Tensor:
    """The channels of `x` `(..., C)` that other frames borrow: groups `[0, len(offsets) * fold)`."""
    return x[..., : len(offsets) * fold]


def mix_new(past: torch.Tensor, new: torch.Tensor, fold: int, offsets: Sequence[int]) -> torch.Tensor:
    """The newest frame's mix for causal `offsets`, from what a stream keeps of its past.

    `past` `(B, W, ..., len(offsets) * fold)` holds the `borrowed` channels of the W previous frames (zeros
    before the stream starts, as the clip's zero padding) and `new` `(B, 1, ..., C)` is the newest frame; the
    result equals `mix_time` over the W + 1 frames, last frame only. A stream keeps only borrowed channels
    because the rest of a past frame is never read again: carrying whole frames tripled the step's copies.
    """
    w = past.shape[1]
    parts = []
    for g, off in enumerate(offsets):
        if not -w <= off < 0:
            raise ValueError(f"a stream borrows only from the {w} frames it keeps, got offset {off} in {offsets}")
        parts.append(past[:, w + off : w + off + 1, ..., g * fold : (g + 1) * fold])
    parts.append(new[..., len(offsets) * fold :])
    return torch.cat(parts, dim=-1)
