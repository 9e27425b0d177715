"""The quantization scheme: the XNNPACK quantizer's settings for QAT and PTQ, and the one way a model is
captured and prepared, so that a checkpoint rebuilds exactly the graph its observer state belongs to.

Both modes quantize the same ops the same way (int8 symmetric per-channel weights, int8 per-tensor affine
activations); they differ only in how ranges are found:

- QAT: non-fused `FakeQuantize` modules. The weight one wraps `MovingAveragePerChannelMinMaxObserver`
  (eps 2**-12). The quantizer's default QAT weight fake-quant (fused, per-channel) has been seen to turn its
  observers NaN, and it computes scales differently from `convert_pt2e`, so the trained and converted models
  drift apart; the non-fused one trains cleanly and converts to what it simulated.
- PTQ: `HistogramObserver` for activations and `PerChannelMinMaxObserver` for weights (the quantizer's own
  static int8 defaults).

Both leave two kinds of op in float although the XNNPACK quantizer would annotate them (`FLOAT_OPS`):

- the adds (the residual connections and the position-embedding add): an add's inputs and output share one
  per-tensor scale each, and the residual stream of a transformer carries a few channels far larger than
  the rest, so int8 rounds the others away;
- the concatenations (the class token joining the patch tokens, and the space-time mixing joining channel
  groups of frames t-1, t and t+1): the quantizer gives every input of a cat and its output one shared scale.
  Quantizing the cats cost the shipped checkpoint 10 dB of SQNR against fp32 (PTQ on its 600 held-out clips:
  23.1 dB with them in int8, 33.1 dB without); they move data and do no arithmetic.

Activations are quantized one of two ways (`SCHEMES`):

- `static` (the default): per-tensor scales found once, by calibration (PTQ) or fine-tuning (QAT). Every
  runtime takes it: ExecuTorch (XNNPACK), onnxruntime (QDQ) and Core ML (W8A8).
- `dynamic`: the scale of a linear's input is computed at every call from its values, weights per-channel
  as above; only the linears are quantized (XNNPACK's dynamically quantized convolution fails on the
  patch embedding's layout), and nothing needs calibrating. The converted PyTorch graph computes one scale
  per tensor; XNNPACK's kernels (`qd8`) one per row, i.e. per token, which follows the activations more
  closely. It is an ExecuTorch scheme: onnxruntime's and Core ML's exporters take static QDQ graphs only.
  PTQ only: with no activation ranges, QAT has nothing of its own to learn beyond what fine-tuning in fp32
  gives.

The `ptq_adds_int8` and `ptq_cats_int8` entries of `quantization_benchmark` measure what quantizing each
costs (README, int8 results). The XNNPACK quantizer's cat annotator ignores the filter function, so float
ops are kept out by marking their nodes annotated-without-quantization before it runs.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from ..model import XViT

log = logging.getLogger(__name__)

MODES = ("qat", "ptq")
SCHEMES = ("static", "dynamic")
DEFAULT_SCHEME = "static"
SCHEME_FORMAT = "xvit_edge.quantization"
# 2: adds stay float; 3: cats too (FLOAT_OPS), older observer state has observers on them; 4: a causal model's
# streaming step is calibrated too (`stream`)
SCHEME_VERSION = 4
EPS = 2**-12  # smallest scale: keeps an all-zero channel (e.g. a zero-initialised projection) quantizable
# Captured with a symbolic batch axis so that training, calibration and evaluation batches of any size run
# through the same graph; export re-captures the converted model at batch 1.
MAX_BATCH = 4096
# Ops the XNNPACK quantizer would put in int8 that we keep in float (see the module docstring).
FLOAT_OPS = (torch.ops.aten.add.Tensor, torch.ops.aten.cat.default)


def quantizer_settings(mode: str, scheme: str = DEFAULT_SCHEME) -> dict[str, Any]:
    """What `build_quantizer(mode, scheme=scheme)` builds, as plain data: stored in every quantized checkpoint
    and checked again when it is loaded."""
    check_mode(mode, scheme)
    qat = mode == "qat"
    settings = {
        "quantizer": "executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer",
        "weight": {"dtype": "int8", "qscheme": "per_channel_symmetric", "ch_axis": 0, "quant_min": -127,
                   "quant_max": 127, "fake_quant": "FakeQuantize" if qat else None,
                   "observer": "MovingAveragePerChannelMinMaxObserver" if qat else "PerChannelMinMaxObserver"},
        "activation": {"dtype": "int8", "qscheme": "per_tensor_affine", "quant_min": -128, "quant_max": 127,
                       "fake_quant": "FakeQuantize" if qat else None,
                       "observer": "MovingAverageMinMaxObserver" if qat else "HistogramObserver"},
        "bias": "float (folded into the int8 kernels by the runtime)",
        "float_ops": [str(op) for op in FLOAT_OPS],
        "eps": EPS,
        "capture": {"api": "torch.export.export", "model_mode": "eval", "dynamic_batch": [1, MAX_BATCH]},
    }
    if scheme == "dynamic":  # PTQ weights as above; activations quantized per call, on the linears only
        del settings["float_ops"]
        settings.update(scheme="dynamic", ops=["linear"], activation={
            "dtype": "int8", "qscheme": "per_tensor_affine, computed at every call (XNNPACK: per token)",
            "quant_min": -128, "quant_max": 127, "observer": "PlaceholderObserver"})
    return settings


def build_quantizer(mode: str, float_ops: tuple = FLOAT_OPS, scheme: str = DEFAULT_SCHEME):
    """The XNNPACK quantizer with our int8 config for `mode` ("qat" or "ptq") and `scheme`, leaving `float_ops`
    in float (the ablation benchmark passes `()` to measure what quantizing them would cost)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e import (
        FakeQuantize,
        HistogramObserver,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        PerChannelMinMaxObserver,
        PlaceholderObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    check_mode(mode, scheme)
    qat, dynamic = mode == "qat", scheme == "dynamic"
    if qat:
        act_ctr = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, eps=EPS)
        weight_ctr = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, eps=EPS)
    else:
        act_ctr = (PlaceholderObserver if dynamic else HistogramObserver).with_args(eps=EPS)
        weight_ctr = PerChannelMinMaxObserver.with_args(eps=EPS)
    act = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                           is_dynamic=dynamic, observer_or_fake_quant_ctr=act_ctr)
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric,
                              ch_axis=0, observer_or_fake_quant_ctr=weight_ctr)
    # Dynamic: inputs only (a linear's output stays float); static: inputs and outputs.
    quantizer = XNNPACKQuantizer().set_global(QuantizationConfig(act, None if dynamic else act, weight, None,
                                                                 is_qat=qat))
    if dynamic:  # XNNPACK's dynamically quantized conv fails on the patch embedding's layout: linears only
        quantizer.SUPPORTED_PATTERNS = [p for p in quantizer.SUPPORTED_PATTERNS if p.name == "linear"]
    else:
        _annotate_fast(quantizer, tuple(float_ops))
    return quantizer


_BATCH_NORMS = {torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit_no_training.default,
                torch.ops.aten._native_batch_norm_legit.default, torch.ops.aten.native_batch_norm.default}


def _annotate_fast(quantizer, float_ops: tuple) -> None:
    """Wrap the quantizer's annotation pass:

    - the nodes of `float_ops` stay unquantized: they are marked annotated, with no quantization specs, before
      the quantizer's own pass, whose annotators skip annotated nodes (its filter function would not do: the
      cat annotator ignores it);
    - a graph without batch norm skips the conv-bn annotators: they trace twelve pattern graphs on every
      call (about 6 s of each prepare, twice per causal model) to find conv + batch-norm pairs it cannot hold.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    annotate, every_pattern = quantizer.annotate, quantizer.SUPPORTED_PATTERNS

    def annotate_fast(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        calls = [n for n in model.graph.nodes if n.op == "call_function"]
        for node in calls:
            if node.target in float_ops:
                node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
        has_bn = any(n.target in _BATCH_NORMS for n in calls)
        quantizer.SUPPORTED_PATTERNS = [p for p in every_pattern if has_bn or "_bn" not in p.name]
        return annotate(model)

    quantizer.annotate = annotate_fast


def capture(model: XViT) -> torch.fx.GraphModule:
    """`torch.export` of the model in eval mode with a symbolic batch axis.

    Eval mode: stochastic depth is a Python branch that export freezes into the graph, and torchao's rewrite
    of a captured graph's dropout nodes to training mode was seen to give every dropout the same rate; so the
    graph stays in eval mode for good (QAT fine-tunes without dropout and stochastic depth) and serves
    training, conversion and export alike. The graph gets
    its own copy of the weights: exported graphs share parameter tensors with the module they came from, and
    fine-tuning must leave the float model untouched.
    """
    model = copy.deepcopy(model)
    cfg = model.config
    example = torch.randn(2, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size,
                          generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    return program.module()


def prepare(model: XViT, mode: str, float_ops: tuple = FLOAT_OPS,
            scheme: str = DEFAULT_SCHEME) -> torch.fx.GraphModule:
    """Capture `model` and insert fake-quant modules (QAT) or observers (PTQ). The result is an exported
    graph: it has no train/eval modes (`.train()` and `.eval()` raise; see `capture`)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    graph = capture(model)
    fn = prepare_qat_pt2e if mode == "qat" else prepare_pt2e
    prepared = fn(graph, build_quantizer(mode, float_ops, scheme))
    log.info("%s: %d %s inserted", mode.upper(), len(quant_modules(prepared)),
             "fake-quant modules" if mode == "qat" else "observers")
    return prepared


def quant_modules(prepared: nn.Module) -> dict[str, nn.Module]:
    """The top-level observers and fake-quant modules of a prepared graph, by name (a fake-quant module's
    inner observer belongs to it and is not listed separately)."""
    from torchao.quantization.pt2e import FakeQuantizeBase, ObserverBase

    return {name: m for name, m in prepared.named_children() if isinstance(m, (FakeQuantizeBase, ObserverBase))}


def float_state(prepared: nn.Module, model: XViT) -> dict[str, torch.Tensor]:
    """The prepared graph's float weights under the model's own names (export keeps them)."""
    state = prepared.state_dict()
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise RuntimeError(f"the prepared graph lost the model's parameter names, e.g. {missing[:3]}")
    return {k: state[k].detach().clone() for k in model.state_dict()}


def check_mode(mode: str, scheme: str = DEFAULT_SCHEME) -> None:
    if mode not in MODES:
        raise ValueError(f"quantization mode must be one of {MODES}, got {mode!r}")
    check_scheme(scheme)
    if scheme == "dynamic" and mode != "ptq":
        raise ValueError("the dynamic scheme has no activation ranges to learn: use --mode ptq with --scheme dynamic")


def check_scheme(scheme: str) -> None:
    """A ValueError naming the schemes for an unknown one."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
