"""int8 export: what is exported, what it is checked against, and what the sidecar records.

- ExecuTorch and ONNX take the converted PT2E graph of a quantized checkpoint (`python -m xvit_edge.quantize`),
  in stream mode its separately calibrated streaming step (`xvit_edge.quantize.stream`):
  XNNPACK runs its int8 linears/convs/adds, onnxruntime its QuantizeLinear/DequantizeLinear pairs. Each
  artifact is checked against that converted graph (SQNR and top-1 agreement: int8 kernels round
  differently from PyTorch's reference ones, so exact equality is not the bar). The bar is 30 dB and 99% by
  default, which trained models pass; a deep model that quantizes poorly can miss it in every int8 runtime
  alike (random-weight `xvit_edge_tiny`, depth 12: ExecuTorch and ONNX 24 dB from the converted model, which
  is itself 24 dB from fp32), so the refusal says how far the artifact is from fp32 and `--int8-min-sqnr`
  lowers the bar knowingly. The bar used is in the sidecar.
- Core ML converts the same converted graph or step (W8A8: int8 weights, quantize/dequantize pairs, fp16
  compute; the step's state in fp16 Core ML states) inside `coreml_qdq.fixed_scalar_dequantize`, because
  coremltools folds a quantized constant scalar wrongly without any error; its saved program, evaluated in
  numpy (`mil`), is held to the same bar against the converted model. From a float checkpoint Core ML
  gets weight-only int8 (per-channel symmetric, `linear_quantize_weights`, linear and conv weights only).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from .errors import ExportError

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint
    from .target import Target

INT8_MIN_SQNR_DB = 30.0
INT8_MIN_AGREEMENT = 0.99
QUANTIZE_COMMAND = "python -m xvit_edge.quantize --checkpoint CKPT --data DIR --mode ptq --out OUT.pt"


def int8_module(target: str, model: torch.nn.Module, quantized: QuantizedCheckpoint | None,
                mode: str = "clip") -> torch.nn.Module:
    """The module that is exported and that the artifact is compared with: the converted clip model, or in
    stream mode the converted streaming step."""
    if quantized is None:
        raise ExportError(f"int8 {target} export needs a quantized checkpoint: run `{QUANTIZE_COMMAND}` first, "
                          "then export OUT.pt with --precision int8")
    if quantized.config != model.config:
        raise ExportError("the quantized model's config differs from the model's; load both from one checkpoint")
    if mode == "stream":
        if quantized.converted_step is None:
            raise ExportError("int8 stream export needs the quantized checkpoint's streaming step: load it with "
                              "load_quantized(path, stream=True)")
        return quantized.converted_step
    return quantized.converted


SCHEME_TEXT = {
    "static": "static int8 (PT2E, XNNPACK quantizer): per-channel symmetric weights, per-tensor affine activations",
    "dynamic": "dynamic int8 (PT2E, XNNPACK quantizer): per-channel symmetric weights on the linears, their inputs "
               "quantized at every call (per token in XNNPACK); everything else float",
}


def check_int8_scheme(target: Target, quantized: QuantizedCheckpoint | None, wanted: str | None = None) -> None:
    """Refuse, in one line, a quantized checkpoint whose int8 scheme `target` cannot run, or that is not the
    scheme asked for (`wanted`, e.g. `--int8-scheme`)."""
    from ..quantize import SCHEMES, activations_of

    if wanted is not None and wanted not in SCHEMES:
        raise ExportError(f"unknown int8 scheme {wanted!r}; choose from {', '.join(SCHEMES)}")
    if quantized is None:
        if wanted is not None:
            raise ExportError(f"--int8-scheme {wanted} needs a quantized checkpoint: run `{QUANTIZE_COMMAND} "
                              f"--scheme {wanted}` first")
        return
    has = activations_of(quantized.scheme)
    if wanted is not None and wanted != has:
        raise ExportError(f"the checkpoint was quantized with the {has} int8 scheme, not {wanted}: quantize the float "
                          f"checkpoint again with --scheme {wanted}, or leave --int8-scheme out")
    if has not in target.int8_schemes:
        raise ExportError(f"the {has} int8 scheme runs on ExecuTorch only; {target.title} takes "
                          f"{' or '.join(target.int8_schemes)} int8: quantize with --scheme static for it")


def checkpoint_record(quantized: QuantizedCheckpoint, mode: str = "clip") -> dict[str, Any]:
    """The sidecar's `quantization` entry for an artifact of the checkpoint's converted graph or step (plain
    JSON: an infinite SQNR, i.e. identical outputs, is null)."""
    from ..quantize import activations_of

    s = quantized.scheme
    activations = activations_of(s)
    scheme = SCHEME_TEXT[activations]
    metrics = s.get("metrics", {})
    if mode == "stream":  # the step's own calibration, on the checkpoint's (after QAT: fine-tuned) weights
        st = s["stream"]
        return json_safe({"scheme": scheme, "activations": activations, "mode": st["mode"],
                          "weights_from": f"{s['mode']} checkpoint",
                          "calibration": st["calibration"], "settings": st["settings"], "ops": st["ops"],
                          "observers": st["observers"], "metrics": {"val": metrics.get("stream_val")}})
    return json_safe({"scheme": scheme, "activations": activations, "mode": s["mode"], "settings": s["settings"],
                      "ops": s["ops"],
                      "observers": s["observers"], "metrics": {k: v for k, v in metrics.items()
                                                               if k in ("val", "int8_vs_fake_quant")}})


def json_safe(obj: Any) -> Any:
    """`obj` with non-finite floats as None, so that it is plain JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def check_int8_parity(target: str, parity: dict[str, float], min_sqnr_db: float = INT8_MIN_SQNR_DB,
                      vs_fp32: dict[str, float] | None = None) -> None:
    """Refuse an int8 artifact further than `min_sqnr_db` or `INT8_MIN_AGREEMENT` top-1 agreement from the
    converted int8 model. `vs_fp32` (the artifact against the float model) goes into the message: when the
    model itself quantizes only that well, lowering the bar knowingly is the user's call."""
    if parity["sqnr_db"] < min_sqnr_db or parity["top1_agreement"] < INT8_MIN_AGREEMENT:
        hint = ""
        if vs_fp32 is not None:
            hint = (f"; against the float model it is {vs_fp32['sqnr_db']:.1f} dB. Deep models with weights far "
                    "from trained ones round differently in every int8 runtime; if the converted model is that "
                    "far from fp32 too, --int8-min-sqnr sets a lower bar knowingly")
        raise ExportError(f"int8 {target} artifact disagrees with the converted int8 model: SQNR "
                          f"{parity['sqnr_db']:.1f} dB (need >= {min_sqnr_db:g}), top-1 agreement "
                          f"{100 * parity['top1_agreement']:.1f}% (need >= {100 * INT8_MIN_AGREEMENT:.0f}%){hint}")

