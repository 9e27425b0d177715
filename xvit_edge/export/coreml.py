"""Core ML: an ML Program `.mlpackage` with class labels and metadata; iOS 17+, or iOS 18+ for a stateful
model (the streaming step, its state kept in Core ML states).

Core ML models run only on Apple platforms. Here the saved package is inspected (inputs, states, outputs, op
types, weight precision, labels: `coreml_spec`) and its ML Program is evaluated op by op in numpy (`mil`)
on the same seeded samples as every target, against the eager model: that checks the program coremltools
wrote (a wrongly folded constant shows), not Apple's kernels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .coreml_qdq import fixed_scalar_dequantize
from .coreml_spec import check_spec, inspect_mlpackage
from .int8 import checkpoint_record, json_safe
from .modes import Call
from .parity import Bar, Fp32Bar, SqnrBar
from .stream import STATE_NAMES
from .target import Target

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint
    from .mil import MILProgram
    from .subject import Subject

log = logging.getLogger(__name__)
# A MIL pass of coremltools 9.0 that only reorders state writes, and fails with a KeyError on the fp16
# streaming step: it anchors each moved write on the op after the state's producer in a list taken before the
# pass, and that op can be another state's write it has already moved and removed. Without it the writes stay
# at the end of the program, which is equally correct; it is skipped for every stateful model, so fp16 and
# fp32 take one path.
_SKIPPED_STATE_PASS = "common::canonicalize_inplace_pattern"
_WEIGHT_QUANTIZATION_PASS = "compression::linear_quantize_weights"
_CONST_DEDUPLICATION_PASS = "common::const_deduplication"
# SQNR bars (dB) against the eager model for the programs that round by design, with room below what was
# measured (`CoreMLTarget.float_bar`); top-1 agreement must stay >= 99% as well.
COREML_MIN_SQNR_DB = {"fp16_states": 50.0, "fp16": 45.0, "int8": 30.0}


def export_mlpackage(model: torch.nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path,
                     labels: list[str], precision: str, metadata: dict[str, str],
                     input_names: tuple[str, ...] = ("video",), output_names: tuple[str, ...] | None = None,
                     state_names: tuple[str, ...] = (), qdq: bool = False) -> dict:
    """Convert `model(*example)`. Without `output_names` it is a classifier (class labels, `classLabel`);
    with them (the streaming step) a plain program whose outputs carry those names.

    int8: weight-only quantization of a float `model`, or with `qdq` a PT2E-converted int8 graph whose
    quantize/dequantize pairs and int8 weights carry over (W8A8; see `coreml_qdq`), computed in fp16.

    `state_names`: buffers of `model` that it overwrites on every call (see `stream.StatefulStep`); they
    become Core ML states (fp16, iOS 18+), kept by the runtime between predictions instead of passed in and
    out."""
    # contiguous: coremltools refuses an exported program whose example has another dim order
    example = tuple(x.contiguous() for x in ((example,) if isinstance(example, torch.Tensor) else example))
    buffers = dict(model.named_buffers())
    missing = [n for n in state_names if n not in buffers]
    if missing:
        raise ValueError(f"state(s) {missing} are not buffers of {type(model).__name__}: {sorted(buffers)}")
    with fixed_scalar_dequantize() if qdq else nullcontext():
        return _convert(model, example, path, labels, precision, metadata, input_names, output_names, state_names,
                        qdq, buffers)


def _convert(model, example, path, labels, precision, metadata, input_names, output_names, state_names, qdq,
             buffers) -> dict:
    import coremltools as ct
    import numpy as np

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
    if precision == "int8" and not qdq:
        # Weight-only int8 as the conversion's last pass. (`linear_quantize_weights` on the converted model
        # would run the default pipeline again, the failing state pass included.)
        pipeline.append_pass(_WEIGHT_QUANTIZATION_PASS)
        pipeline.set_options(_WEIGHT_QUANTIZATION_PASS, {"config": weight_quantization_config()})
        # Deduplication would merge equal constants into one (the zero biases of a fresh model: a LayerNorm's
        # beta and a linear's bias), which the quantization pass then refuses as one constant with two
        # configs ("compression config conflict").
        pipeline.remove_passes([_CONST_DEDUPLICATION_PASS])
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
    """Weight-only int8: per-channel symmetric int8 weights of every linear and conv (256 elements or more),
    dequantized on load; activations and compute stay fp16. Only those ops' weights: a global config would
    also quantize every other large constant, such as the position embedding, which measurably hurt parity."""
    import coremltools.optimize.coreml as cto

    op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                            weight_threshold=256)
    return cto.OptimizationConfig(op_type_configs={"linear": op_config, "conv": op_config})


class CoreMLTarget(Target):
    """An ML Program .mlpackage (iOS 17+; iOS 18+ for the stateful streaming step). The clip model is a
    classifier (class labels); the step outputs logits and keeps its state in Core ML states. int8 from a
    quantized checkpoint is its converted graph or step (W8A8); from a float checkpoint, weight-only int8
    quantized here."""

    name, title, extension = "coreml", "Core ML", ".mlpackage"
    packages = ("coremltools",)
    precisions = ("fp32", "fp16", "int8")
    default_precision = "fp16"  # Core ML's compute precision on device
    keeps_state = True

    def int8_from_checkpoint(self, has_checkpoint: bool, mode: str) -> bool:
        """W8A8 from a quantized checkpoint's converted graph (clip) or converted step (stream, wrapped so
        that its state lives in Core ML states); weight-only int8 from a float checkpoint."""
        return has_checkpoint

    def quantization(self, quantized: QuantizedCheckpoint | None, mode: str) -> dict[str, Any]:
        if self.int8_from_checkpoint(quantized is not None, mode):
            return {**checkpoint_record(quantized, mode),
                    "coreml": "W8A8: the converted graph's int8 weights and int8 activations (quantize/dequantize "
                              "pairs), fp16 compute; quantized scalars folded in float (coreml_qdq)"}
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
                None if classifier else program.output_names, program.state_names,
                qdq=subject.int8_graph)}

    def check(self, report: dict[str, Any], subject: Subject) -> None:
        check_spec(report["coreml"], subject.config, subject.labels, subject.precision, subject.mode.name)

    def float_bar(self, precision: str, mode: str) -> Bar:
        """Bars against the eager model, from measurement (the shipped xvit_edge_nano, evaluated program):
        fp32 clip 1.6e-6 max abs diff; fp32 stream 74 dB (its Core ML states are fp16 whatever the precision);
        fp16 66 dB clip, 62 dB stream; weight-only int8 45 dB clip, 37 dB stream."""
        if precision == "fp32":
            return Fp32Bar() if mode == "clip" else SqnrBar(COREML_MIN_SQNR_DB["fp16_states"])
        return SqnrBar(COREML_MIN_SQNR_DB[precision])

    runs_on = ("the saved ML Program evaluated op by op in numpy (xvit_edge.export.mil: the program coremltools "
               "wrote, its constants and fp16 rounding; not Apple's kernels)")

    def runner(self, path: Path) -> Call:
        """The saved program, evaluated in numpy (Core ML itself runs only on Apple platforms); a stream's
        state goes through the program's Core ML states, fp16, as on a device."""
        from .mil import MILProgram

        program = MILProgram.load(path)
        return _stream_call(program) if program.state_names else _clip_call(program)

    def not_run(self, report: dict[str, Any]) -> dict[str, Any]:
        return {"numeric": report["coreml"]["apple_runtime"]}

    def state_record(self) -> dict[str, Any]:
        """The model keeps its state: a runtime neither feeds nor reads it."""
        return {"storage": "internal (Core ML states)", "names": list(STATE_NAMES), "dtype": "float16",
                "initial": "zeros",
                "signature": "(frame) -> (logits); one Core ML state per stream (MLModel.makeState(), "
                             "iOS 18+), passed to every prediction of that stream"}

    def summary(self, report: dict[str, Any], precision: str) -> str:
        c = report["coreml"]
        extra = (f"; program evaluated in numpy; spec checked (inputs {c['inputs']}, weights {c['weight_dtypes']}, "
                 f"{len(c['labels'])} labels)")
        if c["states"]:
            extra += f"; Core ML states {list(c['states'])} (fp16, iOS 18+)"
        if precision == "int8":
            extra += "; int8 weights and activations" if "quantize" in c["op_counts"] else "; weight-only int8"
        return extra


def _clip_call(program: MILProgram) -> Call:
    """`[video] -> [scores]`: the classifier's per-class scores (the logits), in label order."""
    scores = next(n for n in program.output_names if n != "classLabel")

    def call(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = program.predict({"video": inputs[0].numpy()})
        return [torch.from_numpy(np.asarray(out[scores], np.float32).reshape(1, -1))]

    return call


def _stream_call(program: MILProgram) -> Call:
    """`[frame, *state] -> [logits, *state]`: the explicit state is put into the program's Core ML states
    (fp16) before the frame and read back after it, so the state carried is what Core ML would carry."""

    def call(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        state = {n: x.numpy().astype(program.dtypes[n]) for n, x in zip(STATE_NAMES, inputs[1:])}
        out = program.predict({"frame": inputs[0].numpy()}, state)
        return [torch.from_numpy(np.asarray(out["logits"], np.float32)),
                *(torch.from_numpy(state[n].astype(np.float32)) for n in STATE_NAMES)]

    return call
