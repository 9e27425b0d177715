"""Quantized checkpoints: our checkpoint format plus one `quantization` entry.

The file is an ordinary checkpoint (`save_checkpoint`): its `state_dict` holds the float weights (after QAT,
the fine-tuned ones), so every fp32 tool still reads it. The `quantization` entry adds the scheme (mode,
quantizer settings, how the graph was captured, which ops run in int8, metrics) and `observer_state`: the
prepared graph's state that is not a model weight (fake-quant scales and zero points, observer ranges,
histograms). Loading rebuilds the int8 model deterministically: model from config, `torch.export`, prepare
with the same quantizer, load weights + observer state (strictly), `convert_pt2e`.

A causal model's entry also holds its streaming step's scheme (`stream`) and observer state
(`stream_observer_state`, see `stream`); `load_quantized(..., stream=True)` rebuilds that int8 step the same way.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import torch

from ..config import Preprocessing, XViTConfig
from ..export.sidecar import tool_versions
from ..model.weights import CheckpointError, load_checkpoint, save_checkpoint
from ..model import XViT
from ..model.streaming import STATE_LAYOUT, streamable
from . import stream as step_quant
from .convert import QuantizedModel, convert, convert_graph, op_precisions
from .scheme import DEFAULT_SCHEME, MODES, SCHEME_FORMAT, SCHEME_VERSION, SCHEMES, prepare, quant_modules, quantizer_settings

log = logging.getLogger(__name__)


class QuantizedCheckpoint(NamedTuple):
    """What `load_quantized` returns; unpacks as a tuple."""

    converted: torch.fx.GraphModule  # the int8 graph that export lowers
    fake_quant: torch.fx.GraphModule  # the prepared graph, observers frozen (PTQ: observers only, float outputs)
    config: XViTConfig
    labels: list[str]
    preprocessing: Preprocessing
    scheme: dict[str, Any]  # the `quantization` entry without its tensors
    converted_step: torch.fx.GraphModule | None = None  # the int8 streaming step, when loaded with stream=True


def scheme_of(q: QuantizedModel) -> dict[str, Any]:
    """The plain-data description of a quantized model (what the checkpoint and the sidecar JSON record)."""
    return {"format": SCHEME_FORMAT, "version": SCHEME_VERSION, "mode": q.mode, "activations": q.scheme,
            "settings": quantizer_settings(q.mode, q.scheme), "observers": len(quant_modules(q.prepared)),
            "ops": op_precisions(q.converted), "skipped_batches": len(q.skipped), "metrics": q.metrics,
            "tools": {k: v for k, v in tool_versions().items() if k in ("torch", "torchao", "executorch")},
            **({"stream": {"mode": step_quant.MODE, "settings": quantizer_settings(step_quant.MODE, q.scheme),
                           "observers": len(quant_modules(q.step_prepared)), "ops": op_precisions(q.step_converted),
                           "state_layout": STATE_LAYOUT,
                           "calibration": "clips streamed frame by frame from a fresh state"}}
               if q.step_prepared is not None else {})}


def save_quantized(path: str | os.PathLike, q: QuantizedModel, labels: list[str] | None = None,
                   preprocessing: Preprocessing | None = None, **extra: Any) -> None:
    """Write `q` as a checkpoint (atomically, like `save_checkpoint`)."""
    weights = set(q.float_model.state_dict())
    observer_state = {k: v.detach().clone() for k, v in q.prepared.state_dict().items() if k not in weights}
    entry = {**scheme_of(q), "observer_state": observer_state}
    if q.step_prepared is not None:
        entry["stream_observer_state"] = step_quant.observer_state(q.step_prepared)
    save_checkpoint(path, q.float_model, labels, preprocessing, quantization=entry, **extra)


def activations_of(scheme: dict[str, Any]) -> str:
    """How a checkpoint's `quantization` entry quantizes activations: static or dynamic (entries written before
    the dynamic scheme existed have no `activations` key: static)."""
    return scheme.get("activations", DEFAULT_SCHEME)


def is_quantized(extra: dict[str, Any]) -> bool:
    """Whether a checkpoint's extra entries (`Checkpoint.extra`) hold a quantization scheme."""
    return isinstance(extra.get("quantization"), dict)


def load_quantized(path: str | os.PathLike, stream: bool = False) -> QuantizedCheckpoint:
    """Rebuild the int8 model of a checkpoint written by `save_quantized` (read with weights_only=True), and
    with `stream=True` its int8 streaming step too (a CheckpointError says why when it has none)."""
    model, meta = load_checkpoint(path)
    if not is_quantized(meta.extra):
        raise CheckpointError(f"{path}: not a quantized checkpoint (it has no quantization scheme); make one with "
                              f"python -m xvit_edge.quantize --checkpoint {path} --data DIR --mode ptq --out OUT.pt")
    scheme = meta.extra["quantization"]
    mode = scheme.get("mode")
    if scheme.get("format") != SCHEME_FORMAT or mode not in MODES or "observer_state" not in scheme:
        raise CheckpointError(f"{path}: the quantization entry is incomplete or of an unknown format")
    if scheme.get("version", 0) > SCHEME_VERSION:
        raise CheckpointError(f"{path}: quantization scheme version {scheme['version']} is newer than this "
                              f"xvit_edge ({SCHEME_VERSION}); upgrade xvit-edge")
    activations = activations_of(scheme)
    if activations not in SCHEMES or (mode, activations) == ("qat", "dynamic"):
        raise CheckpointError(f"{path}: unknown int8 scheme {activations!r} ({mode}); this xvit_edge knows "
                              f"{', '.join(SCHEMES)}")
    if scheme.get("settings") != quantizer_settings(mode, activations):
        raise CheckpointError(f"{path}: quantized with other quantizer settings than this xvit_edge builds for "
                              f"{mode!r}, so its observer state cannot be reused; quantize the float model again")
    prepared = prepare(model, mode, scheme=activations)
    _load_state(prepared, {**model.state_dict(), **scheme["observer_state"]}, path, meta.config.name)
    q = convert(prepared, model, mode, activations)
    public = {k: v for k, v in scheme.items() if k not in ("observer_state", "stream_observer_state")}
    log.info("%s: %s int8 model rebuilt (%d observers)", path, mode.upper(), public.get("observers", 0))
    step = _load_step(path, model, scheme) if stream else None
    return QuantizedCheckpoint(q.converted, q.prepared, meta.config, meta.labels, meta.preprocessing, public, step)


def _load_step(path: str | os.PathLike, model: XViT, scheme: dict[str, Any]) -> torch.fx.GraphModule:
    """The int8 streaming step of a quantized checkpoint (see `stream`)."""
    if not streamable(model.config):
        raise CheckpointError(f"{path}: {model.config.name!r} is not a causal mixing model, so it has no "
                              "streaming step; export it with --mode clip")
    if "stream_observer_state" not in scheme:
        raise CheckpointError(f"{path}: quantized without a calibrated streaming step (scheme version "
                              f"{scheme.get('version', 0)}; version 4 adds it); quantize the float checkpoint again "
                              "with python -m xvit_edge.quantize")
    activations = activations_of(scheme)
    if scheme["stream"].get("settings") != quantizer_settings(step_quant.MODE, activations):
        raise CheckpointError(f"{path}: its streaming step was calibrated with other quantizer settings than this "
                              "xvit_edge builds; quantize the float checkpoint again")
    if scheme["stream"].get("state_layout", 1) != STATE_LAYOUT:
        raise CheckpointError(f"{path}: its streaming step was calibrated for the state layout of an older xvit_edge "
                              f"(layout {scheme['stream'].get('state_layout', 1)}, this one carries {STATE_LAYOUT}); "
                              "quantize the float checkpoint again")
    prepared = step_quant.prepare_step(model, activations)
    weights = {f"model.{k}": v for k, v in model.state_dict().items()}  # StreamingStep holds the model
    _load_state(prepared, {**weights, **scheme["stream_observer_state"]}, path, model.config.name)
    log.info("%s: int8 streaming step rebuilt", path)
    return convert_graph(prepared)


def _load_state(prepared: torch.fx.GraphModule, state: dict[str, torch.Tensor], path: str | os.PathLike,
                name: str) -> None:
    """Load weights and observer state into a prepared graph, strictly."""
    own = prepared.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: its observer state does not fit the graph of config {name!r} (missing "
            f"{missing[:4]}, unexpected {unexpected[:4]}); the config and the quantization state disagree")
    # Fill the graph's own state dict rather than pass a plain dict: it carries the modules' versions
    # (`_metadata`), without which the observers take the state for a version-1 one and reset their eps.
    for key in own:
        own[key] = state[key]
    try:
        prepared.load_state_dict(own, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: observer state does not fit config {name!r}: "
                              f"{str(e).splitlines()[0]}") from e
