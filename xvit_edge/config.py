"""`XViTConfig`: the one object that describes a model, from training to checkpoint to export to runtime.

Every module is built from it, every checkpoint stores it (`to_dict`), and export rebuilds the exact model
from it (`from_dict`). Presets are named configs; a tiny test preset sits next to the real ones so the test
suite runs in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

ATTENTIONS = ("mixing", "space_only", "divided", "joint")
HEADS = ("temporal", "mean")
MIX_LAYOUTS = ("per_head", "global")

# Frame offsets of the borrowed channel groups, in order: group 0 is channels [0, fold), group 1 is
# [fold, 2 fold); the remaining channels stay at frame t. The symmetric window (t+1, t-1) is the paper's
# and the official code's (TSM's) order; the causal one only looks back, so a new frame can be encoded once.
SYMMETRIC_OFFSETS = (1, -1)
CAUSAL_OFFSETS = (-1, -2)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# What each annotated field type accepts (floats finite; an int is a float here, as in Python).
_FIELD_KINDS = {"int": _is_int, "float": lambda v: _is_number(v) and math.isfinite(v),
                "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
                "tuple[int, ...]": lambda v: isinstance(v, tuple) and all(_is_int(i) for i in v)}
_KIND_NAMES = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "a string",
               "tuple[int, ...]": "a tuple of whole numbers"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB frames become model input; travels with the weights (ImageNet-21k ViTs use 0.5/0.5)."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize_shorter: int = 256  # shorter side before the centre crop
    crop_size: int = 224  # equals the model's img_size

    def __post_init__(self) -> None:
        # A checkpoint or sidecar is edited by hand at times: std 0 would turn every frame into NaN (and every
        # answer into "class 0"), a crop larger than the resize cannot be taken.
        def three(values: Any, what: str, positive: bool) -> None:
            ok = (isinstance(values, tuple | list) and len(values) == 3
                  and all(_is_number(v) and math.isfinite(v) and (v > 0 or not positive) for v in values))
            if not ok:
                raise ValueError(f"Preprocessing: {what} must be 3 finite numbers{', each > 0' if positive else ''}, "
                                 f"got {values!r}")

        three(self.mean, "mean", positive=False)
        three(self.std, "std", positive=True)
        if not (_is_int(self.crop_size) and _is_int(self.resize_shorter) and 1 <= self.crop_size
                <= self.resize_shorter):
            raise ValueError(f"Preprocessing: crop_size and resize_shorter must be whole numbers with 1 <= crop_size "
                             f"<= resize_shorter, got {self.crop_size!r} and {self.resize_shorter!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return _from_dict(cls, d)

    @classmethod
    def for_size(cls, img_size: int, mean=None, std=None) -> "Preprocessing":
        """Standard 0.875 crop ratio (256 -> 224) for an input of `img_size` pixels."""
        kw = {}
        if mean is not None:
            kw["mean"] = tuple(float(m) for m in mean)
        if std is not None:
            kw["std"] = tuple(float(s) for s in std)
        return cls(resize_shorter=round(img_size / 0.875), crop_size=img_size, **kw)


@dataclass(frozen=True)
class XViTConfig:
    """Architecture of an X-ViT video transformer (Bulat et al., NeurIPS 2021).

    Input is `(B, num_frames, in_chans, img_size, img_size)`; output is `(B, num_classes)` logits.
    """

    name: str = "custom"
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_frames: int = 8
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_classes: int = 400
    # Attention in every block: the paper's space-time "mixing", or a baseline it compares against.
    attention: str = "mixing"
    # Mixing: fold = channels // shift_div per borrowed group (8: 25% of channels borrowed, 4: 50%).
    shift_div: int = 4
    # "per_head": each head's d_h channels are split into groups (the paper's Eq. 7-10); "global": the
    # whole head-major embedding is split (the official code), needed for official checkpoints.
    mix_layout: str = "per_head"
    # Causal mixing borrows from t-1 and t-2 instead of t+1 and t-1, for incremental streaming.
    causal: bool = False
    # Frames per mixing segment (0: the whole clip). The official Kinetics configs mix within independent
    # 8-frame halves of a 16-frame clip; set 8 to reproduce their checkpoints.
    mix_segment: int = 0
    # Blocks whose keys/values also get one summary token (the spatial mean) per frame of the clip.
    summary_layers: tuple[int, ...] = ()
    # Zero-initialised temporal position embedding (1, T, 1, C) added to every token of frame t.
    temporal_embed: bool = True
    # "temporal": the paper's temporal attention aggregation over the per-frame class tokens; "mean".
    head: str = "temporal"
    head_depth: int = 1
    drop_rate: float = 0.0  # dropout on the per-frame features and inside the head's MLP
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-6
    # The official temporal head uses PyTorch's default LayerNorm eps (1e-5); it matters for parity.
    head_layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"XViTConfig {self.name!r}: {msg}")

        for f in dataclasses.fields(self):  # a hand-edited checkpoint or --set value of the wrong kind
            value, kind = getattr(self, f.name), _FIELD_KINDS.get(str(f.type))
            need(kind is None or kind(value), f"{f.name} must be {_KIND_NAMES[str(f.type)]}, got {value!r}")
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_classes", "head_depth"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        need(0 <= self.drop_rate < 1 and 0 <= self.drop_path_rate < 1,
             f"drop_rate and drop_path_rate must be in [0, 1), got {self.drop_rate} and {self.drop_path_rate}")
        need(self.layer_norm_eps > 0 and self.head_layer_norm_eps > 0, "layer norm eps must be > 0")
        need(self.attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        need(self.head in HEADS, f"head must be one of {HEADS}, got {self.head!r}")
        need(self.mix_layout in MIX_LAYOUTS, f"mix_layout must be one of {MIX_LAYOUTS}, got {self.mix_layout!r}")
        need(self.img_size % self.patch_size == 0,
             f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        need(self.num_heads >= 1 and self.embed_dim % self.num_heads == 0,
             f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        need(self.num_frames >= 1, f"num_frames must be >= 1, got {self.num_frames}")
        need(self.shift_div >= 2, f"shift_div must be >= 2 (two borrowed groups), got {self.shift_div}")
        need(self.mix_channels // self.shift_div >= 1,
             f"shift_div {self.shift_div} leaves no channel to borrow from {self.mix_channels} channels")
        need(all(0 <= i < self.depth for i in self.summary_layers),
             f"summary_layers {self.summary_layers} must index blocks 0..{self.depth - 1}")
        need(not (self.causal and self.temporal_embed),
             "a causal model streams over a rolling window where a frame's index changes every step, so it "
             "cannot use a temporal position embedding: set temporal_embed=False")
        need(not (self.causal and self.attention not in ("mixing", "space_only")),
             f"causal is only defined for 'mixing' (and trivially 'space_only'), not {self.attention!r}")
        need(not (self.summary_layers and self.attention != "mixing"),
             "summary tokens are part of the mixing attention; use attention='mixing'")
        need(self.mix_segment == 0 or self.num_frames % self.mix_segment == 0,
             f"mix_segment {self.mix_segment} must divide num_frames {self.num_frames}")
        need(not (self.causal and self.mix_segment), "a causal model mixes over the whole stream: mix_segment=0")
        need(not (self.causal and self.summary_layers),
             "summary tokens of later frames would leak the future into a causal model")

    # Derived shapes, so no other module computes them again.
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_tokens(self) -> int:
        """Tokens per frame: patches plus that frame's class token."""
        return self.num_patches + 1

    @property
    def mix_channels(self) -> int:
        """Channels that one mixing split runs over: a head's d_h, or the whole embedding."""
        return self.head_dim if self.mix_layout == "per_head" else self.embed_dim

    @property
    def fold(self) -> int:
        """Channels in each borrowed group."""
        return self.mix_channels // self.shift_div

    @property
    def mix_offsets(self) -> tuple[int, ...]:
        return CAUSAL_OFFSETS if self.causal else SYMMETRIC_OFFSETS

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def replace(self, **changes: Any) -> "XViTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "XViTConfig":
        return _from_dict(cls, d)


def _from_dict(cls, d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a dict, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; was this saved by a newer xvit_edge?")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)


def space_only_baseline(config: XViTConfig) -> XViTConfig:
    """The paper's tw=0 baseline of the same size: per-frame image attention, frames averaged, no time cue."""
    return config.replace(attention="space_only", head="mean", temporal_embed=False, summary_layers=(),
                          causal=False)


def causal_variant(config: XViTConfig) -> XViTConfig:
    """The streaming variant of a mixing config: borrows from t-1 and t-2, no temporal position embedding."""
    return config.replace(causal=True, temporal_embed=False, summary_layers=())


def _vit(name: str, dim: int, depth: int, heads: int, **kw: Any) -> XViTConfig:
    return XViTConfig(name=name, embed_dim=dim, depth=depth, num_heads=heads, **kw)


PRESETS: dict[str, XViTConfig] = {
    # Tiny fixture for tests: depth 2, width 32, 4 frames of 32 px.
    "xvit_test": _vit("xvit_test", 32, 2, 2, img_size=32, patch_size=8, num_frames=4, num_classes=10),
    # Smallest mobile model: width 64, depth 4, 64 px in 8x8 patches (64 a frame), 8 frames; 0.27 M
    # parameters, 0.13 GMACs a clip. Small enough to train from scratch on a CPU: the shipped checkpoint.
    "xvit_edge_nano": _vit("xvit_edge_nano", 64, 4, 4, img_size=64, patch_size=8, num_frames=8, num_classes=10),
    # Mobile: ViT-Ti/16 width at 160 px, 8 frames (100 patches a frame).
    "xvit_edge_tiny": _vit("xvit_edge_tiny", 192, 12, 3, img_size=160, num_frames=8, num_classes=10),
    # ViT-S/16 at 224 px, 8 frames.
    "xvit_edge_small": _vit("xvit_edge_small", 384, 12, 6, img_size=224, num_frames=8, num_classes=10),
    # The paper's ViT-B/16, 224 px, 8 and 16 frames (shift_div 4: 50% of channels mixed, the SSv2 setting).
    "xvit_b16_8": _vit("xvit_b16_8", 768, 12, 12, img_size=224, num_frames=8, num_classes=174),
    "xvit_b16_16": _vit("xvit_b16_16", 768, 12, 12, img_size=224, num_frames=16, num_classes=174),
}


def get_config(name: str, **overrides: Any) -> XViTConfig:
    """A preset by name, with fields replaced by `overrides` (e.g. `num_classes=10`, `attention='joint'`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
