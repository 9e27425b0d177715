"""The X-ViT video transformer: per-frame ViT tokens, space-time mixing blocks, temporal head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import XViTConfig, get_config
from .attention import TimeAttention, video_block
from .heads import build_head


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: `(B, 3, H, W)` -> `(B, N, C)` (timm's `patch_embed.proj`)."""

    def __init__(self, config: XViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class XViT(nn.Module):
    """X-ViT: `(B, T, 3, H, W)` float frames -> `(B, num_classes)` logits.

    `forward_features` returns the normalised tokens of every frame `(B, T, N + 1, C)` (class token first);
    `forward_head` turns them into logits.
    """

    def __init__(self, config: XViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, dim))
        # Zero-initialised, so a fresh model sees every frame as the image model would.
        self.temporal_embed = nn.Parameter(torch.zeros(1, config.num_frames, 1, dim)) if config.temporal_embed else None
        # Stochastic depth grows linearly with depth (timm); plain Python so meta/fake-tensor builds work.
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(video_block(config, i, rates[i]) for i in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head_drop = nn.Dropout(config.drop_rate)
        self.head = build_head(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's ViT initialisation; time-attention output projections start at zero (TimeSformer)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, TimeAttention):
                nn.init.zeros_(m.proj.weight)
                nn.init.zeros_(m.proj.bias)

    def check_input(self, x: Any) -> None:
        """Raise a ValueError that says what was expected, instead of a shape error deep inside."""
        c = self.config
        want = f"(B, {c.num_frames}, {c.in_chans}, {c.img_size}, {c.img_size})"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a float tensor of shape {want}, got {type(x).__name__}")
        if x.dim() != 5:
            raise ValueError(f"expected a 5-D video batch {want}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
                             + ("; add the batch axis with x.unsqueeze(0)" if x.dim() == 4 else ""))
        _, t, ch, h, w = x.shape
        if t != c.num_frames:
            raise ValueError(f"model {c.name!r} takes exactly {c.num_frames} frames, got {t} (shape {tuple(x.shape)}); "
                             "sample the clip to num_frames frames")
        if ch != c.in_chans:
            raise ValueError(f"expected {c.in_chans} channels at axis 2 {want}, got {ch} (shape {tuple(x.shape)}); "
                             "frames must be channel-first RGB")
        if (h, w) != (c.img_size, c.img_size):
            raise ValueError(f"expected frames of {c.img_size}x{c.img_size} pixels {want}, got {h}x{w}; "
                             "resize and centre-crop with the model's preprocessing")
        if not x.is_floating_point():
            raise ValueError(f"expected normalised float frames, got dtype {x.dtype}; run the preprocessing first")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Frames `(B, T, 3, H, W)` -> tokens `(B, T, N + 1, C)`: patches, class token, positions."""
        b, t = x.shape[:2]
        x = self.patch_embed(x.flatten(0, 1))  # (B*T, N, C)
        x = torch.cat([self.cls_token.expand(b * t, -1, -1), x], dim=1) + self.pos_embed
        return x.unflatten(0, (b, t))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, T, 3, H, W)` -> normalised tokens `(B, T, N + 1, C)`."""
        self.check_input(x)
        x = self.embed(x)
        if self.temporal_embed is not None:
            x = x + self.temporal_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """`(B, T, N + 1, C)` tokens -> `(B, num_classes)` logits, from the per-frame class tokens."""
        return self.head(self.head_drop(features[:, :, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_model(name_or_config: str | XViTConfig, **overrides: Any) -> XViT:
    """Build an X-ViT from a preset name (`"xvit_edge_tiny"`) or a config, e.g.
    `create_model("xvit_edge_tiny", num_classes=10)`. Weights are randomly initialised; see `weights`.
    """
    if isinstance(name_or_config, XViTConfig):
        config = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        config = get_config(name_or_config, **overrides)
    return XViT(config)
