"""Initialisation for training from scratch: attention that starts local, so motion can be learned.

With timm's initialisation (weights ~ N(0, 0.02)) every query-key product starts near zero and attention is
uniform over a frame. X-ViT's mixing then hands each token the spatial *mean* of the borrowed t-1 / t+1
channels, and a clip and its time reversal differ only at the clip's ends: a from-scratch model sits on a
symmetric plateau (exactly chance on the synthetic benchmark's time-reversed class pairs) for hundreds of
steps while a tiny 3D CNN solves them in one hundred.

Mimetic initialisation (Trockman & Kolter, "Mimetic Initialization of Self-Attention Layers", ICML 2023)
starts W_q and W_k near the identity, so q·k is a similarity between tokens; with a 2D sine-cosine position
embedding (as in MAE) similar means nearby, so attention starts local. In a mixing block the key of a
position then carries that position's channels from frames t-1 and t+1, and the query of the same position
in frame t matches them: each token starts by comparing its neighbourhood across time, which is what
direction needs. On the 2-class left/right subset this took the model from 50% (timm init, 300 steps) to
96-98% held-out within 300 steps (see the README's accuracy section for the full benchmark).

Used by `python -m xvit_edge.train` when no pretrained weights are given (`--scratch-init mimetic`, the
default); weights loaded afterwards overwrite it, so it never affects imported checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention

SCRATCH_INITS = ("mimetic", "timm")


def sincos_pos_embed(grid: int, dim: int) -> torch.Tensor:
    """`(grid*grid, dim)` 2D sine-cosine position embedding, row-major like the patch tokens (MAE's recipe:
    a quarter of the channels each for sin(x), cos(x), sin(y), cos(y) over geometric frequencies)."""
    if dim % 4:
        raise ValueError(f"a 2D sine-cosine embedding needs embed_dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                          indexing="ij")
    xs, ys = x.reshape(-1, 1) * omega, y.reshape(-1, 1) * omega
    return torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1).float()


@torch.no_grad()
def mimetic_init_(model: nn.Module, strength: float = 1.0, noise: float = 0.02,
                  generator: torch.Generator | None = None) -> nn.Module:
    """In place: sine-cosine position embedding (class token's entry zero) and, in every backbone block,
    W_q = W_k = strength * I + N(0, noise). Other weights keep their initialisation. Returns `model`."""
    config = model.config
    dim = config.embed_dim
    model.pos_embed.zero_()
    model.pos_embed[0, 1:] = sincos_pos_embed(config.grid_size, dim)
    eye = strength * torch.eye(dim)
    for block in model.blocks:
        for attn in (m for m in block.modules() if isinstance(m, Attention)):
            w = attn.qkv.weight  # (3C, C): rows of q, then k, then v
            for rows in (slice(0, dim), slice(dim, 2 * dim)):
                w[rows] = eye + noise * torch.randn(dim, dim, generator=generator)
    return model
