"""Incremental inference for causal X-ViT: each new frame is encoded once.

A causal model's frame t borrows key/value channel groups from frames t-1 and t-2 only, so a stream can
carry, per block, those borrowed channels of the last two frames' keys and values (the other channels of a
past frame are never read again), plus the class tokens of the last T frames for the temporal head. All of
it is explicit tensors in and out of `StreamingStep.forward`, so the same step exports to ExecuTorch and ONNX
(hidden module buffers would not survive every exporter); for Core ML, which has model states,
`xvit_edge.export.stream.StatefulStep` keeps it in buffers instead.

After exactly T frames from a fresh state the logits equal the whole-clip forward on those T frames: the
zero state plays the part of the clip's zero padding. Later, the stream keeps its history (a frame's features
reach back through the stack of blocks), which a re-run of the last T frames as a clip would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import XViTConfig
from .xvit import XViT


# What the key/value state holds: 1, the whole keys/values of the W previous frames; 2, their borrowed channels
# only. A graph captured for one layout cannot run on the other's state (quantized checkpoints record it).
STATE_LAYOUT = 2
# The state tensors, in the order the step takes and returns them.
STATE_NAMES = ("keys", "values", "frame_tokens")


def streamable(config: XViTConfig) -> bool:
    """Whether the model has an incremental step: causal mixing."""
    return config.causal and config.attention == "mixing"


def history_frames(config: XViTConfig) -> int:
    """How many past frames each block's key/value cache holds: the furthest borrowed offset."""
    return max(-o for o in config.mix_offsets)


def borrowed_channels(config: XViTConfig) -> int:
    """Channels of a key or value that later frames borrow (`MixingAttention.borrowed`): the cache's width."""
    per_frame = len(config.mix_offsets) * config.fold
    return per_frame * config.num_heads if config.mix_layout == "per_head" else per_frame


@dataclass
class StreamState:
    """The state a stream carries between frames; shapes follow from the config alone."""

    keys: torch.Tensor  # (depth, B, W, N + 1, Cb): each block's borrowed key channels of the W previous frames
    values: torch.Tensor  # (depth, B, W, N + 1, Cb)
    frame_tokens: torch.Tensor  # (B, T, C): normalised class tokens of the last T frames, oldest first

    @classmethod
    def zeros(cls, config: XViTConfig, batch: int = 1) -> "StreamState":
        return cls.zeros_of(cls.shapes(config, batch))

    @classmethod
    def zeros_of(cls, shapes: dict[str, list[int]]) -> "StreamState":
        """A fresh state of the given shapes (an artifact's sidecar `state_shapes`, or `shapes`)."""
        return cls(*(torch.zeros(shapes[name]) for name in STATE_NAMES))

    @staticmethod
    def shapes(config: XViTConfig, batch: int = 1) -> dict[str, list[int]]:
        cache = [config.depth, batch, history_frames(config), config.num_tokens, borrowed_channels(config)]
        return {"keys": cache, "values": list(cache), "frame_tokens": [batch, config.num_frames, config.embed_dim]}

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.keys, self.values, self.frame_tokens


class StreamingStep(nn.Module):
    """`forward(frame, keys, values, frame_tokens) -> (logits, keys, values, frame_tokens)` for a causal
    mixing X-ViT; `frame` is one preprocessed frame `(B, 3, H, W)`."""

    def __init__(self, model: XViT) -> None:
        super().__init__()
        cfg = model.config
        if not streamable(cfg):
            raise ValueError(f"incremental streaming needs a causal mixing model (config {cfg.name!r} has "
                             f"attention={cfg.attention!r}, causal={cfg.causal}); see config.causal_variant")
        self.model = model

    def forward(self, frame: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, frame_tokens: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        x = m.embed(frame.unsqueeze(1))  # (B, 1, N + 1, C)
        new_keys, new_values = [], []
        for i, blk in enumerate(m.blocks):
            x, k, v = blk.step(x, keys[i], values[i])
            new_keys.append(k)
            new_values.append(v)
        token = m.norm(x)[:, :, 0]  # (B, 1, C): this frame's class token
        frame_tokens = torch.cat([frame_tokens[:, 1:], token], dim=1)
        # Every block's window moves on by one frame in one copy: the oldest frame out, this one in.
        keys = torch.cat([keys[:, :, 1:], torch.stack(new_keys)], dim=2)
        values = torch.cat([values[:, :, 1:], torch.stack(new_values)], dim=2)
        return m.head(m.head_drop(frame_tokens)), keys, values, frame_tokens

    def run(self, frames: torch.Tensor, state: StreamState | None = None) -> tuple[list[torch.Tensor], StreamState]:
        """Feed `(B, F, 3, H, W)` frames one by one; returns the logits after each frame and the final state."""
        state = state or StreamState.zeros(self.model.config, frames.shape[0])
        carry = state.as_tuple()
        logits = []
        for t in range(frames.shape[1]):
            out, *carry = self(frames[:, t], *carry)
            logits.append(out)
        return logits, StreamState(*carry)
