"""Export a checkpoint to ExecuTorch (.pte, XNNPACK), Core ML (.mlpackage) and ONNX, each verified against
the eager model, each with a sidecar JSON for the runtime. `python -m xvit_edge.export --help`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Preprocessing
from ..model import XViT
from .sidecar import build_sidecar, write_sidecar
from .verify import compare, sample_inputs

log = logging.getLogger(__name__)

TARGETS = ("executorch", "coreml", "onnx")
EXTENSIONS = {"executorch": ".pte", "coreml": ".mlpackage", "onnx": ".onnx"}
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
           precision: str = "fp32", verify: bool = True, samples: int = 4, name: str | None = None) -> Artifact:
    """Write one artifact and its sidecar into `out_dir`; verified against `model` unless `verify=False`.

    Everything is built in a temporary folder and moved into place only once it has verified, so a
    failure leaves nothing partial behind.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision {precision!r} is not available; use fp32, or fp16 for Core ML")
    if precision == "fp16" and target != "coreml":
        raise ExportError("fp16 is a Core ML compute precision; ExecuTorch and ONNX export fp32")
    _require(target)
    model = model.eval()
    cfg = model.config
    name = name or f"{cfg.name}_{precision}"
    filename = name + EXTENSIONS[target]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    except OSError as e:
        raise ExportError(f"cannot write to {out}: {e.strerror or e}") from e
    try:
        example = sample_inputs(cfg, 1, seed=1234)[0]
        inputs = sample_inputs(cfg, samples)
        with torch.no_grad():
            reference = [model(x) for x in inputs]
        path = staging / filename
        meta = {"labels": json.dumps(list(labels)),
                "preprocessing": json.dumps(preprocessing.to_dict()),
                "xvit_config": json.dumps(cfg.to_dict()),
                "description": f"X-ViT video classifier ({cfg.name}, {cfg.num_frames} frames, "
                               f"{cfg.img_size} px, {cfg.num_classes} classes)"}
        report: dict = {}
        with torch.no_grad():
            if target == "executorch":
                from .executorch import export_pte, run_pte

                report["delegation"] = export_pte(model, (example,), path)
                if report["delegation"]["heavy_ops_not_delegated"]:
                    raise ExportError(f"heavy ops left outside XNNPACK: {report['delegation']['heavy_ops_not_delegated']}")
                run = run_pte
            elif target == "onnx":
                from .onnx import export_onnx, run_onnx

                report["onnx"] = export_onnx(model, (example,), path,
                                             {k: meta[k] for k in ("labels", "preprocessing", "xvit_config")},
                                             ["video"], ["logits"])
                run = run_onnx
            else:
                from .coreml import export_mlpackage

                report["coreml"] = export_mlpackage(model, example, path, labels, precision, meta)
                run = None
        if verify and run is not None:
            report["parity"] = compare(reference, [out[0] for out in run(path, [(x,) for x in inputs])])
            if report["parity"]["max_abs_diff"] > FP32_ATOL:
                raise ExportError(f"{target} artifact disagrees with the eager model: max abs diff "
                                  f"{report['parity']['max_abs_diff']:.3g} > {FP32_ATOL}")
        elif verify:
            _check_coreml(report["coreml"], cfg, labels, precision)
            report["parity"] = {"numeric": report["coreml"]["numeric_parity"]}
        else:
            report["parity"] = {"numeric": "skipped (--no-verify)"}
        sidecar = staging / (name + f".{target}.json")
        write_sidecar(sidecar, build_sidecar(filename, target, precision, cfg, labels, preprocessing, report))
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


def _check_coreml(spec: dict, cfg, labels: list[str], precision: str) -> None:
    """Spec checks standing in for numeric parity where Core ML cannot run."""
    want = [1, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size]
    problems = []
    if spec["inputs"].get("video") != want:
        problems.append(f"input 'video' is {spec['inputs'].get('video')}, expected {want}")
    if spec["labels"] != list(labels) or spec["classifier_output"] != "classLabel":
        problems.append("class labels are missing or differ from the checkpoint's")
    if "classify" not in spec["op_counts"] or "linear" not in spec["op_counts"]:
        problems.append(f"unexpected program: ops {sorted(spec['op_counts'])}")
    dtype = "FLOAT16" if precision == "fp16" else "FLOAT32"
    if set(spec["weight_dtypes"]) != {dtype}:
        problems.append(f"weights are {spec['weight_dtypes']}, expected all {dtype}")
    if problems:
        raise ExportError("Core ML spec check failed: " + "; ".join(problems))
