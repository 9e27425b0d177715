"""Export a checkpoint to ExecuTorch (.pte, XNNPACK), Core ML (.mlpackage) and ONNX, each verified against
the eager model, each with a sidecar JSON for the runtime. `python -m xvit_edge.export --help`.

Mode `clip` exports the whole-clip classifier; mode `stream` the incremental step of a causal model, with its
state as explicit tensors in and out, or for Core ML kept inside the model as Core ML states (see `stream.py`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import Preprocessing
from ..model import XViT
from ..model.streaming import StreamingStep, StreamState, streamable
from . import stream
from .int8 import INT8_MIN_SQNR_DB
from .sidecar import build_sidecar, write_sidecar
from .verify import compare, sample_inputs

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint

log = logging.getLogger(__name__)

TARGETS = ("executorch", "coreml", "onnx")
EXTENSIONS = {"executorch": ".pte", "coreml": ".mlpackage", "onnx": ".onnx"}
MODES = ("clip", "stream")
# fp32 parity bound for the artifacts that run here (the model's logits are O(1)).
FP32_ATOL = 1e-4


class ExportError(RuntimeError):
    """An export that could not be made or did not verify; nothing is left behind."""


@dataclass
class Artifact:
    target: str
    path: Path
    sidecar: Path
    report: dict


def _require(target: str) -> None:
    modules = {"executorch": ("executorch",), "coreml": ("coremltools",), "onnx": ("onnx", "onnxruntime", "onnxscript")}
    for name in modules[target]:
        try:
            __import__(name)
        except ImportError as e:
            raise ExportError(f"the {target} export needs the '{name}' package: "
                              "pip install -c constraints.txt 'xvit-edge[export]'") from e


def export(model: XViT, labels: list[str], preprocessing: Preprocessing, target: str, out_dir: str | os.PathLike,
           precision: str = "fp32", verify: bool = True, samples: int = 4, name: str | None = None,
           mode: str = "clip", quantized: QuantizedCheckpoint | None = None,
           int8_min_sqnr: float = INT8_MIN_SQNR_DB) -> Artifact:
    """Write one artifact and its sidecar into `out_dir`; verified against `model` unless `verify=False`.

    `mode="stream"` exports the incremental step of a causal model (`samples` streams of T + 3 frames verify
    it); `mode="clip"` the whole-clip model (`samples` clips). The samples are seeded synthetic videos,
    normalised with `preprocessing` (see `verify.sample_inputs`).

    int8: `quantized` is `xvit_edge.quantize.load_quantized(checkpoint)` (with `stream=True` for stream mode);
    ExecuTorch and ONNX export its converted graph (clip) or converted step (stream) and are verified against
    it; Core ML quantizes `model`'s weights (weight-only). See `int8`. `int8_min_sqnr` lowers or raises the
    SQNR bar of that check; the bar used is recorded in the sidecar.

    Everything is built in a temporary folder and moved into place only once it has verified, so a
    failure leaves nothing partial behind.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"precision {precision!r} is not available; use fp32, int8, or fp16 for Core ML")
    if precision == "fp16" and target != "coreml":
        raise ExportError("fp16 is a Core ML compute precision; ExecuTorch and ONNX export fp32 or int8")
    if mode not in MODES:
        raise ExportError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    _require(target)
    model = model.eval()
    cfg = model.config
    if mode == "stream" and not streamable(cfg):
        raise ExportError(stream.not_streamable_message(cfg))
    subject = model  # what is exported and what the artifact must reproduce (clip mode; the step's below)
    if precision == "int8":
        from .int8 import int8_subject

        subject = int8_subject(target, model, quantized, mode)
    name = name or f"{cfg.name}_{precision}" + ("_stream" if mode == "stream" else "")
    filename = name + EXTENSIONS[target]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    except OSError as e:
        raise ExportError(f"cannot write to {out}: {e.strerror or e}") from e
    try:
        if mode == "stream" and target == "coreml":  # frame in, logits out; the state stays inside the model
            module, example = stream.StatefulStep(model).eval(), stream.example_inputs(cfg)[:1]
            input_names, output_names = ["frame"], ["logits"]
        elif mode == "stream":  # the step with its state in and out; verified by streaming below
            module = subject if precision == "int8" else StreamingStep(model).eval()
            example = stream.example_inputs(cfg)
            input_names, output_names = list(stream.INPUT_NAMES), list(stream.OUTPUT_NAMES)
        else:
            module, example = subject, (sample_inputs(cfg, 1, seed=1234)[0],)
            input_names, output_names = ["video"], ["logits"]
            inputs = sample_inputs(cfg, samples, preprocessing=preprocessing)
            with torch.no_grad():
                reference = [subject(x) for x in inputs]
        path = staging / filename
        meta = {"labels": json.dumps(list(labels)),
                "preprocessing": json.dumps(preprocessing.to_dict()),
                "xvit_config": json.dumps(cfg.to_dict()), "mode": mode,
                "description": f"X-ViT video classifier ({cfg.name}, {cfg.num_frames} frames, "
                               f"{cfg.img_size} px, {cfg.num_classes} classes"
                               + ((", one frame per call, state kept in the model)" if target == "coreml"
                                   else ", one frame per call, state in and out)") if mode == "stream" else ")")}
        quantization = None
        if precision == "int8":
            from .int8 import quantization_record

            quantization = quantization_record(target, quantized, mode)
            meta["quantization"] = json.dumps(quantization)
        report: dict = {}
        with torch.no_grad():
            if target == "executorch":
                from .executorch import export_pte, load_pte, run_pte

                report["delegation"] = export_pte(module, example, path)
                if report["delegation"]["heavy_ops_not_delegated"]:
                    raise ExportError(f"heavy ops left outside XNNPACK: {report['delegation']['heavy_ops_not_delegated']}")
                if precision == "int8":
                    from .int8 import quant_ops_not_delegated

                    if quant_ops_not_delegated(report["delegation"]):
                        raise ExportError("quantize/dequantize ops left outside XNNPACK: "
                                          f"{quant_ops_not_delegated(report['delegation'])}")
                run, load = run_pte, load_pte
            elif target == "onnx":
                from .onnx import export_onnx, load_onnx, run_onnx

                report["onnx"] = export_onnx(module, example, path,
                                             {k: meta[k] for k in ("labels", "preprocessing", "xvit_config", "mode", "quantization")
                                              if k in meta},
                                             input_names, output_names)
                run, load = run_onnx, load_onnx
            else:
                from .coreml import export_mlpackage

                state_names = stream.STATE_NAMES if mode == "stream" else ()  # iOS 18 states
                classifier = mode == "clip"  # the step's output is logits, not a class label
                report["coreml"] = export_mlpackage(module, example, path, labels, precision, meta, tuple(input_names),
                                                    None if classifier else tuple(output_names), state_names)
                run = None
        if verify and run is not None:
            if mode == "stream":
                outputs = stream.stream_runs(load(path), cfg, samples, preprocessing)
                reference = (lambda xs: subject(*xs)) if precision == "int8" else stream.eager_step(model)
                report["parity"] = stream.compare_runs(stream.stream_runs(reference, cfg, samples, preprocessing),
                                                       outputs, cfg)
            else:
                outputs = [out[0] for out in run(path, [(x,) for x in inputs])]
                report["parity"] = compare(reference, outputs)
            if precision == "int8":
                from .int8 import INT8_MIN_AGREEMENT, check_int8_parity

                report["parity"]["reference"] = "the converted int8 " + ("step" if mode == "stream" else "model") \
                    + " (PyTorch)"
                with torch.no_grad():  # for information: how far int8 is from the float model
                    report["int8_vs_fp32"] = (
                        stream.compare_runs(stream.stream_runs(stream.eager_step(model), cfg, samples, preprocessing),
                                            outputs, cfg)
                        if mode == "stream" else compare([model(x) for x in inputs], outputs))
                report["parity"]["bar"] = {"min_sqnr_db": float(int8_min_sqnr),
                                           "min_top1_agreement": INT8_MIN_AGREEMENT}
                check_int8_parity(target, report["parity"], int8_min_sqnr, report["int8_vs_fp32"])
            elif report["parity"]["max_abs_diff"] > FP32_ATOL:
                raise ExportError(f"{target} artifact disagrees with the eager model: max abs diff "
                                  f"{report['parity']['max_abs_diff']:.3g} > {FP32_ATOL}")
        elif verify:
            _check_coreml(report["coreml"], cfg, labels, precision, mode)
            report["parity"] = {"numeric": report["coreml"]["numeric_parity"]}
        else:
            report["parity"] = {"numeric": "skipped (--no-verify)"}
        sidecar = staging / (name + f".{target}.json")
        write_sidecar(sidecar, build_sidecar(filename, target, precision, cfg, labels, preprocessing, report, mode,
                                             quantization))
        final, final_sidecar = out / filename, out / sidecar.name
        for src, dst in ((path, final), (sidecar, final_sidecar)):
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
            shutil.move(str(src), dst)
        return Artifact(target, final, final_sidecar, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_coreml(spec: dict, cfg, labels: list[str], precision: str, mode: str = "clip") -> None:
    """Spec checks standing in for numeric parity where Core ML cannot run: input shapes, then either the
    classifier (clip mode) or the logits output and the fp16 states the program writes, on iOS 18+ (stream
    mode), ops, weight precision."""
    from .coreml import STATE_DTYPE, STATEFUL_SPEC_VERSION

    states: dict[str, dict] = {}
    if mode == "stream":
        inputs = {"frame": [1, cfg.in_chans, cfg.img_size, cfg.img_size]}
        outputs: list[str] | None = ["logits"]
        states = {n: {"shape": shape, "dtype": STATE_DTYPE} for n, shape in StreamState.shapes(cfg).items()}
    else:
        inputs, outputs = {"video": [1, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size]}, None
    problems = []
    if spec["inputs"] != inputs:
        problems.append(f"inputs are {spec['inputs']}, expected {inputs}")
    if set(spec["input_dtypes"].values()) != {"FLOAT32"}:  # what the sidecar promises a runtime
        problems.append(f"input types are {spec['input_dtypes']}, expected FLOAT32")
    if spec["states"] != states:
        problems.append(f"states are {spec['states']}, expected {states}")
    if sorted(states) != spec["state_writes"]:
        problems.append(f"the program writes states {spec['state_writes']}, expected {sorted(states)}")
    if states and spec["spec_version"] < STATEFUL_SPEC_VERSION:
        problems.append(f"specification version {spec['spec_version']} predates states (needs "
                        f"{STATEFUL_SPEC_VERSION}, iOS 18)")
    if spec["labels"] != list(labels):
        problems.append("class labels are missing or differ from the checkpoint's")
    if outputs is None and spec["classifier_output"] != "classLabel":
        problems.append("not a classifier (no classLabel output)")
    if outputs is not None and spec["outputs"] != list(outputs):
        problems.append(f"outputs are {spec['outputs']}, expected {list(outputs)}")
    if (outputs is None and "classify" not in spec["op_counts"]) or "linear" not in spec["op_counts"]:
        problems.append(f"unexpected program: ops {sorted(spec['op_counts'])}")
    if precision == "int8":  # weight-only: every linear/conv weight int8 (small ones may stay fp16)
        short = {op: n for op, n in spec["int8_weights"].items() if n[0] != n[1]}
        if "INT8" not in spec["weight_dtypes"] or short:
            problems.append(f"weights are {spec['weight_dtypes']}; int8 linear/conv weights (int8, all): {short}")
    else:
        dtype = "FLOAT16" if precision == "fp16" else "FLOAT32"
        if set(spec["weight_dtypes"]) != {dtype}:
            problems.append(f"weights are {spec['weight_dtypes']}, expected all {dtype}")
    if problems:
        raise ExportError("Core ML spec check failed: " + "; ".join(problems))
