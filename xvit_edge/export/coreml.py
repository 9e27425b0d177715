"""Core ML: an ML Program `.mlpackage` with class labels and metadata; iOS 17+, or iOS 18+ for a stateful
model (the streaming step, its state kept in Core ML states).

Core ML models run only on Apple platforms. On other machines the converted program is inspected instead
(inputs, states, outputs, op types, weight precision, labels), and the result says plainly that numeric
parity was not run.
"""

from __future__ import annotations

import json
import logging
import platform
from collections import Counter
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Model states exist from iOS 18 / macOS 15 (specification version 9, opset CoreML8), and only in fp16.
STATEFUL_SPEC_VERSION = 9
STATE_DTYPE = "FLOAT16"
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


def inspect_mlpackage(path: Path) -> dict:
    """What can be checked without running Core ML: I/O, states, op types, weight dtypes, labels, metadata."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    main = spec.mlProgram.functions["main"]
    ops: Counter = Counter()
    weight_dtypes: Counter = Counter()
    int8_values: set[str] = set()  # outputs of ops that dequantize int8 weights at load time
    weight_inputs: dict[str, list[str]] = {}  # linear/conv op type -> the names of their weights
    state_writes: set[str] = set()  # the states the program writes: a state never written is state dropped
    for op in main.block_specializations[main.opset].operations:
        ops[op.type] += 1
        if op.type == "write_state":
            state_writes.update(a.name for a in op.inputs["input"].arguments)
        # Plain weights are `const` ops (`val`); quantized ones are `constexpr_*` ops holding int8 data, as an
        # attribute (iOS 17) or as an inline input value (iOS 18's `constexpr_blockwise_shift_scale`).
        values = []
        if op.type == "const" and "val" in op.attributes:
            values.append(op.attributes["val"])
        elif op.type.startswith("constexpr_"):
            for name in ("quantized_data", "data"):
                if name in op.attributes:
                    values.append(op.attributes[name])
                if name in op.inputs:
                    values += [a.value for a in op.inputs[name].arguments if a.HasField("value")]
        for value in values:
            if value.type.HasField("tensorType"):
                tensor = value.type.tensorType
                size = 1
                for d in tensor.dimensions:
                    size *= d.constant.size
                if size >= 256:  # weights, not shape constants
                    dtype = MIL_pb2.DataType.Name(tensor.dataType)
                    weight_dtypes[dtype] += 1
                    if dtype == "INT8":
                        int8_values.update(o.name for o in op.outputs)
        if op.type in ("linear", "conv") and "weight" in op.inputs:
            weight_inputs.setdefault(op.type, []).extend(a.name for a in op.inputs["weight"].arguments)
    meta = dict(spec.description.metadata.userDefined)
    return {
        "spec_version": spec.specificationVersion, "opset": main.opset,
        "inputs": {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input},
        "input_dtypes": {i.name: ArrayFeatureType.ArrayDataType.Name(i.type.multiArrayType.dataType)
                         for i in spec.description.input},
        "states": {s.name: {"shape": list(s.type.stateType.arrayType.shape),
                            "dtype": ArrayFeatureType.ArrayDataType.Name(s.type.stateType.arrayType.dataType)}
                   for s in spec.description.state},
        "state_writes": sorted(state_writes),
        "outputs": [o.name for o in spec.description.output],
        "op_counts": dict(sorted(ops.items())), "weight_dtypes": dict(weight_dtypes),
        "int8_weights": {op: [sum(n in int8_values for n in names), len(names)] for op, names in weight_inputs.items()},
        "labels": json.loads(meta.get("labels", "[]")),
        "classifier_output": spec.description.predictedFeatureName,
        "numeric_parity": "not run: Core ML runs only on Apple platforms" if platform.system() != "Darwin"
        else "not run by this check",
    }
