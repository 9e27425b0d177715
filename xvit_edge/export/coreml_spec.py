"""What can be checked of a saved Core ML package without running it: read the spec back (I/O, states, op
types, weight precision, labels) and check it against what the export promised."""

from __future__ import annotations

import json
import math
import platform
from collections import Counter
from pathlib import Path

from ..config import XViTConfig
from ..model.streaming import StreamState
from .errors import ExportError

# Model states exist from iOS 18 / macOS 15 (specification version 9, opset CoreML8), and only in fp16.
STATEFUL_SPEC_VERSION = 9
STATE_DTYPE = "FLOAT16"


def inspect_mlpackage(path: Path) -> dict:
    """What can be checked without running Core ML: I/O, states, op types, weight dtypes, labels, metadata."""
    import coremltools as ct
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
        for dtype in _weight_dtypes(op):
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
        # The program's numerics are checked by evaluating it (`mil`); Apple's runtime itself is not run.
        "apple_runtime": "not run: Core ML runs only on Apple platforms" if platform.system() != "Darwin"
        else "not run by this check",
    }


def _weight_dtypes(op) -> list[str]:
    """The dtypes of the weights (tensors of 256 elements or more, not shape constants) an op holds. Plain
    weights are `const` ops (`val`); quantized ones are `constexpr_*` ops holding int8 data, as an attribute
    (iOS 17) or as an inline input value (iOS 18's `constexpr_blockwise_shift_scale`)."""
    from coremltools.proto import MIL_pb2

    values = []
    if op.type == "const" and "val" in op.attributes:
        values.append(op.attributes["val"])
    elif op.type.startswith("constexpr_"):
        for name in ("quantized_data", "data"):
            if name in op.attributes:
                values.append(op.attributes[name])
            if name in op.inputs:
                values += [a.value for a in op.inputs[name].arguments if a.HasField("value")]
    dtypes = []
    for value in values:
        if value.type.HasField("tensorType"):
            tensor = value.type.tensorType
            if math.prod(d.constant.size for d in tensor.dimensions) >= 256:
                dtypes.append(MIL_pb2.DataType.Name(tensor.dataType))
    return dtypes


def check_spec(spec: dict, cfg: XViTConfig, labels: list[str], precision: str, mode: str = "clip") -> None:
    """Spec checks standing in for numeric parity where Core ML cannot run: input shapes, then either the
    classifier (clip mode) or the logits output and the fp16 states the program writes, on iOS 18+ (stream
    mode), ops, weight precision."""
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
