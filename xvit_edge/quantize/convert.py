"""From a prepared (calibrated or fine-tuned) graph to the int8 model: freeze the ranges, `convert_pt2e`."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import XViTConfig
from ..model import XViT
from .scheme import DEFAULT_SCHEME, float_state, quant_modules

log = logging.getLogger(__name__)


@dataclass
class QuantizedModel:
    """A quantized X-ViT in its three forms (and its streaming step's two, for a causal model).

    `prepared`: the graph with its observers frozen: fake-quantized (QAT), or observed only (PTQ: its outputs
    are the float model's). `converted`: the int8 graph from `convert_pt2e` (quantize/dequantize around int8
    weights), which export lowers. `float_model`: an `XViT` with the prepared graph's float weights (after
    QAT: the fine-tuned ones).
    """

    mode: str
    config: XViTConfig
    prepared: torch.fx.GraphModule
    converted: torch.fx.GraphModule
    float_model: XViT
    skipped: list[str] = field(default_factory=list)  # batches left out of calibration / fine-tuning, and why
    metrics: dict[str, Any] = field(default_factory=dict)
    # A causal model's streaming step, calibrated and converted on its own (see `stream`); None otherwise.
    step_prepared: torch.fx.GraphModule | None = None
    step_converted: torch.fx.GraphModule | None = None
    scheme: str = DEFAULT_SCHEME  # how activations are quantized: static or dynamic (see `scheme`)


def freeze(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Stop every observer (ranges stay as they are); in place, returned for chaining."""
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)
    return prepared


def unfreeze(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import enable_observer

    prepared.apply(enable_observer)
    return prepared


def convert_graph(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Freeze `prepared` and convert a copy of it (convert_pt2e rewrites the graph it is given)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    freeze(prepared)
    bad = [name for name, m in quant_modules(prepared).items()
           if any(not torch.isfinite(b).all() for b in m.buffers() if b.is_floating_point())]
    if bad:
        raise RuntimeError(f"non-finite quantization ranges in {bad[:4]}; calibrate on more (finite) data")
    return convert_pt2e(copy_prepared(prepared))


def copy_prepared(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A deep copy of a prepared graph whose quantization annotations point at its own nodes. A plain deepcopy
    copies each node's annotation apart from the graph, so the annotation's input nodes are copies outside
    it; conversion then cannot find a dynamic input's choose-qparams node and fails ("No chose qparams node
    found"). Static graphs convert either way."""
    copied = copy.deepcopy(prepared)
    nodes = {n.name: n for n in copied.graph.nodes}
    for node in copied.graph.nodes:
        note = node.meta.get("quantization_annotation")
        if note is not None and note.input_qspec_map:
            note.input_qspec_map = {nodes[k.name]: v for k, v in note.input_qspec_map.items()}
    return copied


def convert(prepared: torch.fx.GraphModule, model: XViT, mode: str, scheme: str = DEFAULT_SCHEME) -> QuantizedModel:
    """The int8 model of a prepared graph (`convert_graph`), with the float model of its weights."""
    converted = convert_graph(prepared)
    float_model = XViT(model.config)
    float_model.load_state_dict(float_state(prepared, float_model))
    return QuantizedModel(mode, model.config, prepared, converted, float_model.eval(), scheme=scheme)


# The ops that do arithmetic; shape ops (views, slices, pads, transposes) just carry int8 or float values.
COMPUTE_OPS = ("linear", "conv2d", "add", "mul", "cat", "matmul", "bmm", "softmax", "layer_norm", "gelu", "mean")


def op_precisions(graph: torch.fx.GraphModule) -> dict[str, dict[str, int]]:
    """Which compute ops of a prepared or converted graph the quantizer put in int8 and which it left in
    float, counted by op type (from the quantizer's annotations, which conversion keeps on the nodes)."""
    out: dict[str, dict[str, int]] = {"int8": {}, "float": {}}
    for node in graph.graph.nodes:
        if node.op != "call_function" or not str(node.target).startswith("aten."):
            continue
        name = str(node.target).split(".")[1]
        if name not in COMPUTE_OPS:
            continue
        note = node.meta.get("quantization_annotation")
        int8 = note is not None and (bool(note.input_qspec_map) or note.output_qspec is not None)
        bucket = out["int8" if int8 else "float"]
        bucket[name] = bucket.get(name, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in out.items()}
