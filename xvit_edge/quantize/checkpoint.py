"""Quantized checkpoints: our checkpoint format plus one `quantization` entry.

The file is an ordinary checkpoint (`save_checkpoint`): its `state_dict` holds the float weights (after QAT,
the fine-tuned ones), so every fp32 tool still reads it. The `quantization` entry adds the scheme (mode,
quantizer settings, how the graph was captured, which ops run in int8, metrics) and `observer_state`: the
prepared graph's state that is not a model weight (fake-quant scales and zero points, observer ranges,
histograms). Loading rebuilds the int8 model deterministically: model from config, `torch.export`, prepare
with the same quantizer, load weights + observer state (strictly), `convert_pt2e`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import torch

from ..config import Preprocessing, XViTConfig
from ..export.sidecar import tool_versions
from ..model.weights import CheckpointError, load_checkpoint, save_checkpoint
from .convert import QuantizedModel, convert, op_precisions
from .scheme import MODES, SCHEME_FORMAT, SCHEME_VERSION, prepare, quant_modules, quantizer_settings

log = logging.getLogger(__name__)


class QuantizedCheckpoint(NamedTuple):
    """What `load_quantized` returns; unpacks as a tuple."""

    converted: torch.fx.GraphModule  # the int8 graph that export lowers
    fake_quant: torch.fx.GraphModule  # the prepared graph, observers frozen (PTQ: observers only, float outputs)
    config: XViTConfig
    labels: list[str]
    preprocessing: Preprocessing
    scheme: dict[str, Any]  # the `quantization` entry without its tensors


def scheme_of(q: QuantizedModel) -> dict[str, Any]:
    """The plain-data description of a quantized model (what the checkpoint and the sidecar JSON record)."""
    return {"format": SCHEME_FORMAT, "version": SCHEME_VERSION, "mode": q.mode,
            "settings": quantizer_settings(q.mode), "observers": len(quant_modules(q.prepared)),
            "ops": op_precisions(q.converted), "skipped_batches": len(q.skipped), "metrics": q.metrics,
            "tools": {k: v for k, v in tool_versions().items() if k in ("torch", "torchao", "executorch")}}


def save_quantized(path: str | os.PathLike, q: QuantizedModel, labels: list[str] | None = None,
                   preprocessing: Preprocessing | None = None, **extra: Any) -> None:
    """Write `q` as a checkpoint (atomically, like `save_checkpoint`)."""
    weights = set(q.float_model.state_dict())
    observer_state = {k: v.detach().clone() for k, v in q.prepared.state_dict().items() if k not in weights}
    save_checkpoint(path, q.float_model, labels, preprocessing,
                    quantization={**scheme_of(q), "observer_state": observer_state}, **extra)


def is_quantized(extra: dict[str, Any]) -> bool:
    """Whether a checkpoint's extra entries (`Checkpoint.extra`) hold a quantization scheme."""
    return isinstance(extra.get("quantization"), dict)


def load_quantized(path: str | os.PathLike) -> QuantizedCheckpoint:
    """Rebuild the int8 model of a checkpoint written by `save_quantized` (read with weights_only=True)."""
    model, meta = load_checkpoint(path)
    if not is_quantized(meta.extra):
        raise CheckpointError(f"{path}: not a quantized checkpoint (it has no quantization scheme); make one with "
                              f"python -m xvit_edge.quantize --checkpoint {path} --data DIR --mode qat --out OUT.pt")
    scheme = meta.extra["quantization"]
    mode = scheme.get("mode")
    if scheme.get("format") != SCHEME_FORMAT or mode not in MODES or "observer_state" not in scheme:
        raise CheckpointError(f"{path}: the quantization entry is incomplete or of an unknown format")
    if scheme.get("version", 0) > SCHEME_VERSION:
        raise CheckpointError(f"{path}: quantization scheme version {scheme['version']} is newer than this "
                              f"xvit_edge ({SCHEME_VERSION}); upgrade xvit-edge")
    if scheme.get("settings") != quantizer_settings(mode):
        raise CheckpointError(f"{path}: quantized with other quantizer settings than this xvit_edge builds for "
                              f"{mode!r}, so its observer state cannot be reused; quantize the float model again")
    prepared = prepare(model, mode)
    state = {**model.state_dict(), **scheme["observer_state"]}
    own = prepared.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: its observer state does not fit the graph of config {meta.config.name!r} (missing "
            f"{missing[:4]}, unexpected {unexpected[:4]}); the config and the quantization state disagree")
    # Fill the graph's own state dict rather than pass a plain dict: it carries the modules' versions
    # (`_metadata`), without which the observers take the state for a version-1 one and reset their eps.
    for key in own:
        own[key] = state[key]
    try:
        prepared.load_state_dict(own, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: observer state does not fit config {meta.config.name!r}: "
                              f"{str(e).splitlines()[0]}") from e
    q = convert(prepared, model, mode)
    public = {k: v for k, v in scheme.items() if k != "observer_state"}
    log.info("%s: %s int8 model rebuilt (%d observers)", path, mode.upper(), public.get("observers", 0))
    return QuantizedCheckpoint(q.converted, q.prepared, meta.config, meta.labels, meta.preprocessing, public)
