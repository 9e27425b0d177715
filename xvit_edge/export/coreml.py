"""Core ML: an ML Program `.mlpackage` with class labels and metadata; iOS 17+, or iOS 18+ for a stateful
model (the streaming step, its state kept in Core ML states).

Core ML models run only on Apple platforms. On other machines the converted program is inspected instead
(inputs, states, outputs, op types, weight precision, labels: `coreml_spec`), and the result says plainly
that numeric parity was not run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .coreml_spec import check_spec, inspect_mlpackage
from .int8 import json_safe
from .stream import STATE_NAMES
from .target import Target

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint
    from .subject import Subject

log = logging.getLogger(__name__)
# A MIL pass of coremltools 9.0 that only reorders state writes, and fails with a KeyError on the fp16
# streaming step: it anchors each moved write on the op after the state's producer in a list taken before the
# pass, and that op can be another state's write it has already moved and removed. Without it the writes stay
# at the end of the program, which is equally correct; it is skipped for every stateful model, so fp16 and
# fp32 take one path.
_SKIPPED_STATE_PASS = "common::canonicalize_inplace_pattern"
_WEIGHT_QUANTIZATION_PASS = "compression::linear_quantize_weights"


def export_mlpackage(model: torch.nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path,
                     labels: list[str], precision: str, metadata: dict[str, str],
                     input_names: tuple[str, ...] = ("video",), output_names: tuple[str, ...] | None = None,
                     state_names: tuple[str, ...] = ()) -> dict:
    """Convert `model(*example)`. Without `output_names` it is a classifier (class labels, `classLabel`);
    with them (the streaming step) a plain program whose outputs carry those names.

    `state_names`: buffers of `model` that it overwrites on every call (see `stream.StatefulStep`); they
    become Core ML states (fp16, iOS 18+), kept by the runtime between predictions instead of passed in and
    out."""
    import coremltools as ct
    import numpy as np

    example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    buffers = dict(model.named_buffers())
    missing = [n for n in state_names if n not in buffers]
    if missing:
        raise ValueError(f"state(s) {missing} are not buffers of {type(model).__name__}: {sorted(buffers)}")
    program = torch.export.export(model, example).run_decompositions({})
    pipeline = ct.PassPipeline.DEFAULT
    stateful = {}
    if state_names:
        pipeline.remove_passes([_SKIPPED_STATE_PASS])
        # Core ML states are fp16 whatever the compute precision: the program reads each into the compute
        # precision and casts it back to fp16 when it writes it.
        states = [ct.StateType(wrapped_type=ct.TensorType(shape=tuple(buffers[n].shape), dtype=np.float16), name=n)
                  for n in state_names]
        stateful = {"states": states}
    if precision == "int8":
        # Weight-only int8 as the conversion's last pass. (`linear_quantize_weights` on the converted model
        # would run the default pipeline again, the failing state pass included.)
        pipeline.append_pass(_WEIGHT_QUANTIZATION_PASS)
        pipeline.set_options(_WEIGHT_QUANTIZATION_PASS, {"config": weight_quantization_config()})
    mlmodel = ct.convert(
        program,
        # fp32 inputs, as the sidecar and the preprocessing promise: with fp16 compute coremltools would make
        # them fp16 by default, and an app filling an fp32 MLMultiArray would then need to convert it.
        inputs=[ct.TensorType(name=n, shape=tuple(x.shape), dtype=np.float32) for n, x in zip(input_names, example)],
        outputs=[ct.TensorType(name=n) for n in output_names] if output_names else None,
        classifier_config=None if output_names else ct.ClassifierConfig(list(labels)),
        minimum_deployment_target=ct.target.iOS18 if state_names else ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        pass_pipeline=pipeline,
        **stateful,
    )
    mlmodel.author = "xvit_edge"
    mlmodel.license = metadata.get("license", "see the model's training data and weights")
    mlmodel.short_description = metadata["description"]
    if "video" in input_names:
        mlmodel.input_description["video"] = "(1, frames, 3, H, W) RGB frames, normalised as in 'preprocessing'"
    for key in ("labels", "preprocessing", "xvit_config", "quantization"):
        if key in metadata:
            mlmodel.user_defined_metadata[key] = metadata[key]
    mlmodel.save(str(path))
    return inspect_mlpackage(path)


def weight_quantization_config():
    """Weight-only int8: per-channel symmetric int8 weights (every weight of 256 elements or more), dequantized
    on load; activations and compute stay fp16."""
    import coremltools.optimize.coreml as cto

    op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                            weight_threshold=256)
    return cto.OptimizationConfig(global_config=op_config)


class CoreMLTarget(Target):
    """An ML Program .mlpackage (iOS 17+; iOS 18+ for the stateful streaming step). The clip model is a
    classifier (class labels); the step outputs logits and keeps its state in Core ML states. int8 is
    weight-only, quantized here from the float weights (for a quantized checkpoint, its fine-tuned ones)."""

    name, title, extension = "coreml", "Core ML", ".mlpackage"
    packages = ("coremltools",)
    precisions = ("fp32", "fp16", "int8")
    default_precision = "fp16"  # Core ML's compute precision on device
    keeps_state = True
    int8_from_checkpoint = False

    def quantization(self, quantized: QuantizedCheckpoint | None, mode: str) -> dict[str, Any]:
        return json_safe({
            "scheme": "weight-only int8: per-channel symmetric weights (coremltools linear_quantize_weights), "
                      "fp16 activations",
            "weights_from": f"{quantized.scheme['mode']} checkpoint (fine-tuned float weights)" if quantized
            else "fp32 checkpoint"})

    def write(self, subject: Subject, path: Path) -> dict[str, Any]:
        program = subject.program(keeps_state=True)
        classifier = subject.mode.name == "clip"  # the step's output is logits, not a class label
        with torch.no_grad():
            return {"coreml": export_mlpackage(
                program.module, program.example, path, subject.labels, subject.precision,
                subject.metadata(keeps_state=True), program.input_names,
                None if classifier else program.output_names, program.state_names)}

    def check(self, report: dict[str, Any], subject: Subject) -> None:
        check_spec(report["coreml"], subject.config, subject.labels, subject.precision, subject.mode.name)

    def runner(self, path: Path) -> None:
        return None  # Core ML runs only on Apple platforms

    def not_run(self, report: dict[str, Any]) -> dict[str, Any]:
        return {"numeric": report["coreml"]["numeric_parity"]}

    def state_record(self) -> dict[str, Any]:
        """The model keeps its state: a runtime neither feeds nor reads it."""
        return {"storage": "internal (Core ML states)", "names": list(STATE_NAMES), "dtype": "float16",
                "initial": "zeros",
                "signature": "(frame) -> (logits); one Core ML state per stream (MLModel.makeState(), "
                             "iOS 18+), passed to every prediction of that stream"}

    def summary(self, report: dict[str, Any], precision: str) -> str:
        c = report["coreml"]
        extra = f"; spec checked (inputs {c['inputs']}, weights {c['weight_dtypes']}, {len(c['labels'])} labels)"
        if c["states"]:
            extra += f"; Core ML states {list(c['states'])} (fp16, iOS 18+)"
        return extra + ("; weight-only int8" if precision == "int8" else "")
