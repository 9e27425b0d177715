"""Weights in and out: our checkpoint format, timm ViT/DeiT image checkpoints, official X-ViT checkpoints.

A checkpoint is untrusted input: files are read with `torch.load(..., weights_only=True)` (tensors and plain
containers only, never arbitrary pickled code), and anything that does not fit the model raises a
`CheckpointError` that names the file, the key and the shapes, instead of a silent partial load.

Our format is one dict: `{format, version, config, state_dict, labels, preprocessing}`, so every later step
(quantize, export, runtime) rebuilds the exact model from the file alone.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import Preprocessing, XViTConfig
from .heads import MeanHead
from .xvit import XViT

log = logging.getLogger(__name__)

FORMAT = "xvit_edge"
FORMAT_VERSION = 1
StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, corrupt, or made for another architecture."""


@dataclass
class LoadReport:
    """What a weight import did, key by key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # in the model, not in the file: kept at their initialisation
    ignored: list[str] = field(default_factory=list)  # in the file, deliberately unused (e.g. a 1000-class head)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")

        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.resized:
            lines.append(f"  resized: {few(self.resized)}")
        if self.new:
            lines.append(f"  new (initialised, to be trained): {few(self.new)}")
        if self.ignored:
            lines.append(f"  ignored from the file: {few(self.ignored)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read the tensors of a `.pth`/`.pt`/`.bin` (safely) or `.safetensors` file, unwrapping the usual
    containers (`state_dict`, `model`, `model_state`) and a DistributedDataParallel `module.` prefix."""
    return _unwrap(_load_file(path), path)


def _unwrap(obj: Any, path: str | os.PathLike) -> StateDict:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: holds no state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors, e.g. {bad[:3]}; not a weights file")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_file(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package: "
                                  "pip install 'xvit-edge[safetensors]'") from e
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise CheckpointError(f"{path}: not a valid .safetensors file ({e})") from e
    if path.suffix == ".npz":
        raise CheckpointError(f"{path}: JAX .npz checkpoints are not supported; use timm's PyTorch or "
                              ".safetensors export of the same weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e) and "GLOBAL" not in str(e):  # junk bytes, not a refused object
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint; is it truncated or corrupt?") from e
        raise CheckpointError(
            f"{path}: refused to unpickle: the file holds Python objects beyond tensors and plain containers, "
            f"which a weights file should not ({str(e).splitlines()[0]})") from e
    except Exception as e:  # noqa: BLE001 - the unpickler fails in many ways (IndexError, EOFError, ...) on junk
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint; is it truncated or corrupt? "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e


# ------------------------------------------------------------------------------------ our checkpoint format


@dataclass
class Checkpoint:
    """The contents of one of our checkpoints, besides the weights."""

    config: XViTConfig
    labels: list[str]
    preprocessing: Preprocessing
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, model: XViT, labels: list[str] | None = None,
                    preprocessing: Preprocessing | None = None, storage_dtype: torch.dtype | None = None,
                    **extra: Any) -> None:
    """Write `{format, version, config, state_dict, labels, preprocessing, **extra}` atomically.

    `storage_dtype=torch.float16` halves the file (for checkpoints shipped in the package); loading casts
    the weights back into the fp32 model."""
    cfg = model.config
    labels = list(labels) if labels is not None else [str(i) for i in range(cfg.num_classes)]
    if len(labels) != cfg.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {cfg.num_classes} classes")
    preprocessing = preprocessing or Preprocessing.for_size(cfg.img_size)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(),
               "state_dict": {k: v.detach().cpu().to(storage_dtype or v.dtype) if v.is_floating_point()
                              else v.detach().cpu() for k, v in model.state_dict().items()},
               "labels": labels, "preprocessing": preprocessing.to_dict(), **extra}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is an xvit_edge checkpoint (one a re-run may replace), read without building the model."""
    try:
        obj = _load_file(path)
    except (CheckpointError, OSError):
        return False
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike) -> tuple[XViT, Checkpoint]:
    """Rebuild the model saved by `save_checkpoint`; returns `(model in eval mode, metadata)`."""
    obj = _load_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        hint = " (it looks like a bare state dict: import it with load_timm_weights or load_official_xvit)" \
            if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()) else ""
        raise CheckpointError(f"{path}: not an xvit_edge checkpoint{hint}")
    if obj.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {obj['version']} is newer than this xvit_edge "
                              f"({FORMAT_VERSION}); upgrade xvit-edge")
    try:
        config = XViTConfig.from_dict(obj["config"])
        preprocessing = Preprocessing.from_dict(obj["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config or preprocessing: {e}") from e
    labels = _check_labels(obj.get("labels"), config, preprocessing, path)
    model = XViT(config)
    _load_exact(model, obj["state_dict"], str(path))
    extra = {k: v for k, v in obj.items()
             if k not in ("format", "version", "config", "state_dict", "labels", "preprocessing")}
    return model.eval(), Checkpoint(config, labels, preprocessing, extra)


def _check_labels(labels: Any, config: XViTConfig, preprocessing: Preprocessing,
                  path: str | os.PathLike) -> list[str]:
    """The labels, if they name each class once, and the crop matches the model's input; a CheckpointError
    otherwise (a hand-edited file would fail later in a runtime, or silently index the wrong name)."""
    if not (isinstance(labels, list | tuple) and all(isinstance(x, str) and x for x in labels)):
        raise CheckpointError(f"{path}: its labels are not a list of names")
    if len(labels) != config.num_classes or len(set(labels)) != len(labels):
        raise CheckpointError(f"{path}: {len(labels)} labels ({len(set(labels))} distinct) for a model with "
                              f"{config.num_classes} classes; each class needs one name of its own")
    if preprocessing.crop_size != config.img_size:
        raise CheckpointError(f"{path}: preprocessing crops {preprocessing.crop_size} px but the model takes "
                              f"{config.img_size} px frames")
    return list(labels)


def _load_exact(model: XViT, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: does not match config {model.config.name!r}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    _check_shapes(model, state, source)
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # a diverged run saved by other means: every answer would be NaN
        raise CheckpointError(f"{source}: {bad} holds NaN or infinite values; use a checkpoint from before the "
                              "training diverged")
    model.load_state_dict(state)


def _check_shapes(model: XViT, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise CheckpointError(
                f"{source}: {k} has shape {tuple(v.shape)} in the file but {tuple(own[k].shape)} in model "
                f"{model.config.name!r} (embed_dim {model.config.embed_dim}, patch {model.config.patch_size}, "
                f"{model.config.num_frames} frames); pick the preset that matches the checkpoint")


# ------------------------------------------------------------------------------------------ timm ViT/DeiT

# Backbone names shared with timm's VisionTransformer, as prefixes.
_BACKBONE = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")
# Image-model parts with no place in the video model: classifier heads, DeiT's distillation token.
_TIMM_UNUSED = ("head.", "head_dist.", "dist_token", "pre_logits.", "fc_norm.")


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: int, num_prefix: int = 1) -> torch.Tensor:
    """Bicubic, antialiased resampling of a square grid of position embeddings `(1, prefix + G*G, C)`
    (timm's `resample_abs_pos_embed`); the prefix (class token) rows are kept as they are."""
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise CheckpointError(f"pos_embed has {grid.shape[1]} patch positions, not a square grid")
    if old == new_grid:
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def _fit_pos_embed(v: torch.Tensor, model: XViT, num_prefix: int, report: LoadReport) -> torch.Tensor:
    """The class token's row, then the patch grid resampled to the model's input size; other prefix rows
    (DeiT's distillation token) are dropped."""
    new = torch.cat([v[:, :1], resample_pos_embed(v, model.config.grid_size, num_prefix)[:, num_prefix:]], dim=1)
    if new.shape != v.shape:
        report.resized.append(f"pos_embed {tuple(v.shape)} -> {tuple(new.shape)}")
    return new


def timm_to_xvit(state: Mapping[str, torch.Tensor], model: XViT, source: str = "state dict") -> tuple[StateDict, LoadReport]:
    """Convert a timm ViT/DeiT image state dict to this model's names and sizes ("inflation": the mixing
    adds no parameters, so every backbone weight is reused as it is; only the position grid is resampled)."""
    if "patch_embed.proj.weight" not in state or not any(k.startswith("blocks.0.attn.qkv") for k in state):
        raise CheckpointError(f"{source}: not a timm ViT/DeiT checkpoint (no patch_embed.proj.weight / "
                              f"blocks.0.attn.qkv.*; first keys: {list(state)[:4]})")
    report = LoadReport(source)
    out: StateDict = {}
    num_prefix = 2 if "dist_token" in state else 1  # DeiT's distillation token has a position row too
    unknown = []
    for k, v in state.items():
        if k == "pos_embed":
            out[k] = _fit_pos_embed(v, model, num_prefix, report)
        elif k.startswith(_BACKBONE):
            out[k] = v
        elif k.startswith(("head.weight", "head.bias")) and isinstance(model.head, MeanHead) \
                and v.shape == model.head.fc.state_dict()[k.removeprefix("head.")].shape:
            out["head.fc." + k.removeprefix("head.")] = v  # the image classifier fits the mean head as it is
        elif k.startswith(_TIMM_UNUSED):
            report.ignored.append(k)
        else:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f"{source}: parameters a plain ViT does not have, e.g. {unknown[:4]}: this is "
                              "another architecture (layer scale, registers, ...), which X-ViT cannot reproduce")
    return out, report


def load_timm_weights(model: XViT, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> LoadReport:
    """Initialise `model` from a timm ViT/DeiT image checkpoint (a file, or a state dict already in memory).

    Every backbone tensor must be present and fit; the video-only parts (temporal embedding, time attention,
    temporal head) keep their initialisation and are listed in the report as new.
    """
    name = "state dict" if isinstance(source, Mapping) else str(source)
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    converted, report = timm_to_xvit(state, model, name)
    return _load_partial(model, converted, report)


def _load_partial(model: XViT, converted: StateDict, report: LoadReport) -> LoadReport:
    """Load the backbone strictly (every backbone tensor present and of the right shape); the rest is new."""
    own = model.state_dict()
    extra = sorted(set(converted) - set(own))
    if extra:
        raise CheckpointError(f"{report.source}: tensors the model {model.config.name!r} has no place for, e.g. "
                              f"{extra[:4]}; the checkpoint is deeper or of another layout than the preset")
    _check_shapes(model, converted, report.source)
    missing = sorted(set(own) - set(converted))
    missing_backbone = [k for k in missing if k.startswith(_BACKBONE) and ".attn_t." not in k
                        and ".norm_t." not in k]
    if missing_backbone:
        raise CheckpointError(f"{report.source}: backbone tensors missing from the file, e.g. "
                              f"{missing_backbone[:4]}; the checkpoint is shallower than model {model.config.name!r}")
    model.load_state_dict(converted, strict=False)
    report.loaded = sorted(converted)
    report.new = missing
    log.info(report.summary())
    return report


# --------------------------------------------------------------------------------------- official X-ViT

# Official (1adrianb/video-transformers, SlowFast-based) names -> ours. The backbone is timm's ViT under
# `base_model.`; the temporal head ("VitHead") is `consensus.`: its blocks are `temporal_encoder.N` and its
# classifier is `mlp_head` = Sequential(LayerNorm, Linear, GELU, Dropout, Linear).
_OFFICIAL_RENAMES = (
    ("base_model.temp_embed", "temporal_embed"),
    ("base_model.", ""),
    ("consensus.temporal_encoder.", "head.blocks."),
    ("consensus.cls_token", "head.cls_token"),
    ("consensus.mlp_head.0.", "head.norm."),
    ("consensus.mlp_head.1.", "head.fc1."),
    ("consensus.mlp_head.4.", "head.fc2."),
)
# Unused by the 'vit' consensus: the backbone's replaced classifier and the dropout-path classifier.
_OFFICIAL_UNUSED = ("base_model.head.", "new_fc.", "base_model.pre_logits.")


def _official_name(key: str) -> str | None:
    for old, new in _OFFICIAL_RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def official_to_xvit(state: Mapping[str, torch.Tensor], model: XViT, source: str = "state dict") -> tuple[StateDict, LoadReport]:
    """Rename an official X-ViT state dict to this model's names; a shorter temporal embedding (the
    official Kinetics configs embed 8 positions for 16 frames, repeating them) is tiled to `num_frames`."""
    if "base_model.patch_embed.proj.weight" not in state or "consensus.cls_token" not in state:
        raise CheckpointError(f"{source}: not an official X-ViT checkpoint (no base_model.patch_embed.proj.weight "
                              f"/ consensus.cls_token; first keys: {list(state)[:4]})")
    report = LoadReport(source)
    out: StateDict = {}
    unknown = []
    for k, v in state.items():
        name = _official_name(k)
        if k.startswith(_OFFICIAL_UNUSED):
            report.ignored.append(k)
        elif name is None:
            unknown.append(k)
        elif name == "temporal_embed" and v.shape[1] != model.config.num_frames:
            frames = model.config.num_frames
            if frames % v.shape[1]:
                raise CheckpointError(f"{source}: temp_embed has {v.shape[1]} positions, which do not tile "
                                      f"{frames} frames")
            out[name] = v.repeat(1, frames // v.shape[1], 1, 1)
            report.resized.append(f"temporal_embed {tuple(v.shape)} -> {tuple(out[name].shape)} (tiled)")
        elif name == "pos_embed":
            out[name] = _fit_pos_embed(v, model, 1, report)
        else:
            out[name] = v
    if unknown:
        raise CheckpointError(f"{source}: keys an official X-ViT does not have, e.g. {unknown[:4]}")
    return out, report


def _official_setting(cfg_text: Any, key: str) -> int | None:
    """An integer setting from the YAML dump that SlowFast saves beside the weights (`cfg`)."""
    import re

    if not isinstance(cfg_text, str):
        return None
    m = re.search(rf"^\s*{key}:\s*(\d+)\s*$", cfg_text, flags=re.MULTILINE)
    return int(m.group(1)) if m else None


def load_official_xvit(path: str | os.PathLike, *, shift_div: int | None = None, num_frames: int | None = None,
                       mix_segment: int | None = None, num_heads: int | None = None,
                       ) -> tuple[XViT, Preprocessing, LoadReport]:
    """Build the model of an official X-ViT checkpoint (e.g. `xvit_b16_16_k600.pth`, `xvit_b16_16_ss2.pth`)
    and load every tensor. Architecture comes from the tensor shapes; `shift_div` and the mixing segment
    (`XVIT.SHIFT_DIV`, `XVIT.NUM_SEGMENTS`) from the config saved in the file, or from the arguments.
    Heads are not visible in the weights: ViT's 64 channels per head unless `num_heads` is given.
    Returns the model (eval mode), its preprocessing (mean/std 0.5, 224 px crop) and the report."""
    obj = _load_file(path)
    cfg_text = obj.get("cfg") if isinstance(obj, Mapping) else None
    state = _unwrap(obj, path)
    if "base_model.patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path}: not an official X-ViT checkpoint (no base_model.patch_embed.proj.weight)")
    shift_div = shift_div or _official_setting(cfg_text, "SHIFT_DIV")
    if shift_div is None:
        raise CheckpointError(f"{path}: the file does not record SHIFT_DIV; pass shift_div (8 for the Kinetics "
                              "checkpoints, 4 for Something-Something v2)")
    patch = state["base_model.patch_embed.proj.weight"]
    dim, patch_size = patch.shape[0], patch.shape[-1]
    grid = math.isqrt(state["base_model.pos_embed"].shape[1] - 1)
    embed_frames = state["base_model.temp_embed"].shape[1]
    num_frames = num_frames or _official_setting(cfg_text, "NUM_FRAMES") or embed_frames
    segment = mix_segment if mix_segment is not None else (_official_setting(cfg_text, "NUM_SEGMENTS") or num_frames)
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("base_model.blocks."))
    head_depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("consensus.temporal_encoder."))
    config = XViTConfig(
        name="xvit_official", img_size=grid * patch_size, patch_size=patch_size, num_frames=num_frames,
        embed_dim=dim, depth=depth, num_heads=num_heads or max(dim // 64, 1), num_classes=state["consensus.mlp_head.4.weight"].shape[0],
        attention="mixing", shift_div=shift_div, mix_layout="global",
        mix_segment=0 if segment == num_frames else segment, head="temporal", head_depth=head_depth,
        head_layer_norm_eps=1e-5)
    model = XViT(config)
    converted, report = official_to_xvit(state, model, str(path))
    _load_exact(model, converted, str(path))
    report.loaded = sorted(converted)
    log.info(report.summary())
    return model.eval(), Preprocessing.for_size(config.img_size, mean=(0.5,) * 3, std=(0.5,) * 3), report


def load_pretrained(model: XViT, path: str | os.PathLike) -> LoadReport:
    """Initialise `model`'s backbone (and temporal head, where it fits) from any supported checkpoint: ours,
    an official X-ViT, or a timm ViT/DeiT image model. The classifier is never taken over: class sets differ."""
    obj = _load_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        state = dict(obj["state_dict"])
        report = LoadReport(str(path))
    else:
        state = read_state_dict(path)
        if "consensus.cls_token" in state:
            state, report = official_to_xvit(state, model, str(path))
        else:
            state, report = timm_to_xvit(state, model, str(path))
    classifier = ("head.fc2.", "head.fc.")
    report.ignored += [k for k in state if k.startswith(classifier)]
    state = {k: v for k, v in state.items() if not k.startswith(classifier)}
    if isinstance(model.head, MeanHead):  # a temporal head has no place in a mean-head model
        report.ignored += [k for k in state if k.startswith("head.")]
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    return _load_partial(model, state, report)
