"""Classification heads over the per-frame class tokens `(B, T, C)`."""

from __future__ import annotations

import torch
from torch import nn

from ..config import XViTConfig
from .attention import Attention, Block


class TemporalAttentionHead(nn.Module):
    """The paper's temporal attention aggregation: a learnable class token attends the T per-frame class
    tokens through `head_depth` pre-LN transformer blocks (qkv without bias, no position embedding, as in the
    official code), then LayerNorm -> Linear -> GELU -> Dropout -> Linear. Cost O(T), not O(T S).
    """

    def __init__(self, config: XViTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.mlp_hidden, Attention(dim, config.num_heads, qkv_bias=False), config.head_layer_norm_eps)
            for _ in range(config.head_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.head_layer_norm_eps)
        self.fc1 = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(config.drop_rate)
        self.fc2 = nn.Linear(dim, config.num_classes)

    def forward(self, frame_tokens: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, classes)
        x = torch.cat([self.cls_token.expand(frame_tokens.shape[0], -1, -1), frame_tokens], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.fc2(self.drop(self.act(self.fc1(self.norm(x[:, 0])))))


class MeanHead(nn.Module):
    """Temporal averaging of the per-frame class tokens, then a linear classifier (timm's `head`)."""

    def __init__(self, config: XViTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.embed_dim, config.num_classes)

    def forward(self, frame_tokens: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, classes)
        return self.fc(frame_tokens.mean(dim=1))


def build_head(config: XViTConfig) -> nn.Module:
    return TemporalAttentionHead(config) if config.head == "temporal" else MeanHead(config)
