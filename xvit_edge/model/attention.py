"""Attention modules: plain multi-head attention, the space-time mixing attention, and the transformer block.

Every module takes tokens laid out as `(B, T, N, C)` (batch, frames, tokens per frame, channels) or, for
plain attention, any `(..., L, C)`. Attention is written as matmul + softmax (not a fused kernel) so each
runtime sees the same simple ops and FLOPs can be counted exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import XViTConfig
from .mixing import borrowed, mix_new, mix_time


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`(..., L, C)` -> `(..., H, L, C / H)`."""
    return x.unflatten(-1, (num_heads, x.shape[-1] // num_heads)).transpose(-2, -3)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`a @ b` for operands with the same leading dims, as one 3-D `bmm`. A matmul of more than three dims
    exports as an expand before its bmm, a copy that XNNPACK does not take: each one split the delegated
    graph in two."""
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.reshape(*a.shape[:-2], *out.shape[-2:])


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """`(..., H, L, d)` -> `(..., L, H * d)`."""
    return x.transpose(-2, -3).flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention over the token axis (-2) of a `(..., L, C)` tensor (timm's layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v, each `(..., L, C)`, heads not yet split."""
        qkv = self.qkv(x)
        dim = x.shape[-1]
        return qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.project(x))
        attn = matmul(q * self.scale, k.transpose(-1, -2)).softmax(dim=-1)
        return self.proj(merge_heads(matmul(attn, v)))


class JointAttention(Attention):
    """Full space-time attention: every token of the clip attends every other, O(T^2 S^2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, N, C)
        return super().forward(x.flatten(1, 2)).view(x.shape)


class TimeAttention(Attention):
    """Attention across frames at each spatial position (TimeSformer's divided attention, time part)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, N, C)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MixingAttention(Attention):
    """Space-time mixing attention: frame t's queries attend frame t's tokens, with keys and values whose
    channel groups are borrowed from neighbouring frames; optionally one summary token per frame of the clip
    (the spatial mean of that frame's keys/values) is appended to every frame's keys/values.
    """

    def __init__(self, config: XViTConfig, summary: bool = False) -> None:
        super().__init__(config.embed_dim, config.num_heads, config.qkv_bias)
        self.fold = config.fold
        self.offsets = config.mix_offsets
        self.per_head = config.mix_layout == "per_head"
        self.segment = config.mix_segment
        self.summary = summary

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, N, C)` keys or values -> mixed, heads split: `(B, T, H, N, d)`."""
        b, t = x.shape[:2]
        if self.segment and self.segment != t:  # independent segments of `segment` frames each
            x = x.reshape(b * t // self.segment, self.segment, *x.shape[2:])
        x = self._heads(mix_time(self._groups(x), self.fold, self.offsets))
        return x.reshape(b, t, *x.shape[2:])

    def _groups(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, F, N, C)` -> the layout whose last axis the channel groups split: `(B, F, N, H, d)` per head
        (the paper), else `(B, F, N, C)` (the official code splits the whole head-major embedding)."""
        return x.unflatten(-1, (self.num_heads, -1)) if self.per_head else x

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """A mixed `_groups` layout -> heads split, `(B, F, H, N, d)`."""
        return x.transpose(2, 3) if self.per_head else split_heads(x, self.num_heads)

    def borrowed(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, F, N, C)` keys or values -> the channels other frames borrow, `(B, F, N, Cb)` (head-major)."""
        return borrowed(self._groups(x), self.fold, self.offsets).flatten(-2 if self.per_head else -1)

    def mix_step(self, past: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """A causal stream's newest frame mixed, heads split `(B, 1, H, N, d)`, from the `borrowed` channels
        `(B, W, N, Cb)` of the W previous frames and the frame's own `(B, 1, N, C)` (see `mixing.mix_new`)."""
        return self._heads(mix_new(self._groups(past), self._groups(new), self.fold, self.offsets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, N, C)
        q, k, v = self.project(x)
        q = split_heads(q, self.num_heads) * self.scale  # (B, T, H, N, d)
        logits = matmul(q, self.mix(k).transpose(-1, -2))  # (B, T, H, N, N)
        if not self.summary:
            return self.proj(merge_heads(matmul(logits.softmax(dim=-1), self.mix(v))))
        # Summary tokens: one per frame (the mean over its tokens), shared by all frames: (B, H, T, d). Every
        # frame's queries meet the same T summaries, so the frames are stacked into one (T*N)-row matmul per
        # head rather than broadcast over frames (an expand copy before each bmm, outside XNNPACK).
        t, n = x.shape[1:3]
        k_sum, v_sum = (split_heads(s.mean(dim=2), self.num_heads) for s in (k, v))
        q_rows = q.transpose(1, 2).flatten(2, 3)  # (B, H, T*N, d)

        def to_frames(y: torch.Tensor) -> torch.Tensor:  # (B, H, T*N, e) -> (B, T, H, N, e)
            return y.unflatten(2, (t, n)).transpose(1, 2)

        attn = torch.cat([logits, to_frames(matmul(q_rows, k_sum.transpose(-1, -2)))], dim=-1).softmax(dim=-1)
        to_sum = attn[..., n:].transpose(1, 2).flatten(2, 3)  # (B, H, T*N, T)
        out = matmul(attn[..., :n], self.mix(v)) + to_frames(matmul(to_sum, v_sum))
        return self.proj(merge_heads(out))

    def step(self, x: torch.Tensor, k_past: torch.Tensor, v_past: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new frame of a causal stream: `x` `(B, 1, N, C)`; `k_past`/`v_past` `(B, W, N, Cb)` hold the
        borrowed channels of the keys and values of the W previous frames (zeros before the stream starts, like
        the clip's zero padding). Returns the output for the frame and its own borrowed key and value channels
        `(B, 1, N, Cb)`, which the caller appends to its window."""
        q, k, v = self.project(x)
        q = split_heads(q, self.num_heads) * self.scale  # (B, 1, H, N, d)
        # The newest frame's mix from the kept channels is exactly what the whole clip computes there.
        attn = matmul(q, self.mix_step(k_past, k).transpose(-1, -2)).softmax(dim=-1)
        out = self.proj(merge_heads(matmul(attn, self.mix_step(v_past, v))))
        return out, self.borrowed(k), self.borrowed(v)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = (torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < keep).to(x.dtype)
        return x * mask / keep


class Block(nn.Module):
    """Pre-LN transformer block (timm's parameter names), with an optional time-attention step first."""

    def __init__(
        self,
        dim: int,
        mlp_hidden: int,
        attn: nn.Module,
        eps: float = 1e-6,
        drop_path: float = 0.0,
        attn_t: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if attn_t is not None:
            self.norm_t = nn.LayerNorm(dim, eps=eps)
            self.attn_t = attn_t
        else:
            self.attn_t = None
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.drop_path = DropPath(drop_path)

    def step(self, x: torch.Tensor, k_past: torch.Tensor, v_past: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One frame of a causal stream (mixing attention only); see `MixingAttention.step`."""
        h, k_new, v_new = self.attn.step(self.norm1(x), k_past, v_past)
        x = x + h
        return x + self.mlp(self.norm2(x)), k_new, v_new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn_t is not None:
            x = x + self.drop_path(self.attn_t(self.norm_t(x)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def video_block(config: XViTConfig, index: int, drop_path: float = 0.0) -> Block:
    """Block `index` of the backbone, with the attention that `config.attention` names."""
    dim, heads, bias = config.embed_dim, config.num_heads, config.qkv_bias
    attn_t = None
    if config.attention == "mixing":
        attn: nn.Module = MixingAttention(config, summary=index in config.summary_layers)
    elif config.attention == "joint":
        attn = JointAttention(dim, heads, bias)
    else:  # space_only, and the space step of divided
        attn = Attention(dim, heads, bias)
        if config.attention == "divided":
            attn_t = TimeAttention(dim, heads, bias)
    return Block(dim, config.mlp_hidden, attn, config.layer_norm_eps, drop_path, attn_t)
