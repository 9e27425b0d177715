"""Loading a saved ML Program and walking its main function in order.

What it evaluates: the program coremltools wrote, op by op, with the constants, shapes and dtypes it holds,
so a conversion bug (a wrongly folded constant, a dropped state write, a mis-ordered transpose) shows in the
outputs. The precision rule: every op's inputs are read as float32 (int8 weights dequantized in float32),
the op is computed in float32 (matmul, linear and conv accumulate in float32), and its output is rounded to
the dtype the program declares for it: fp16 in an fp16 program, so fp16 rounding happens where the program
says it does. Core ML states are stored in their declared dtype (fp16). What it cannot emulate: Apple's
kernels and fused ops, the GPU's and Neural Engine's own accumulation precision and order, their GELU and
softmax approximations. It checks the converted graph, not the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .ops import OPS, UnsupportedOpError

# MIL dtype names (protobuf) -> numpy
DTYPES = {"FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64, "INT8": np.int8, "UINT8": np.uint8,
          "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_, "STRING": np.str_}


class MILProgram:
    """The main function of a saved `.mlpackage`, evaluated in numpy (see the module's precision rule)."""

    def __init__(self, function: Any, dtypes: dict[str, type], input_names: list[str], state_names: list[str],
                 output_names: list[str], state_shapes: dict[str, tuple[int, ...]]) -> None:
        self.function = function
        self.dtypes = dtypes  # every named value -> its declared numpy dtype
        self.input_names, self.state_names, self.output_names = input_names, state_names, output_names
        self.state_shapes = state_shapes

    @classmethod
    def load(cls, path: str | Path) -> MILProgram:
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load
        from coremltools.converters.mil.mil import types
        from coremltools.proto import MIL_pb2

        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        program = load(spec, spec.specificationVersion, model.weights_dir)
        function = program.functions["main"]
        proto = spec.mlProgram.functions["main"]
        dtypes: dict[str, type] = {}
        for value in list(proto.inputs) + [o for op in proto.block_specializations[proto.opset].operations
                                           for o in op.outputs]:
            tensor = _tensor_type(value.type)
            if tensor is not None:  # dictionaries and lists (the classifier's outputs) keep what the op made
                dtypes[value.name] = DTYPES[MIL_pb2.DataType.Name(tensor.dataType)]
        states = [n for n, v in function.inputs.items() if types.is_state(v.sym_type)]
        return cls(function, dtypes, [n for n in function.inputs if n not in states], states,
                   [o.name for o in function.outputs], {n: tuple(function.inputs[n].shape) for n in states})

    @property
    def precision(self) -> str:
        """fp16 when the program computes in fp16 (its float ops declare fp16 outputs), else fp32."""
        floats = [d for d in self.dtypes.values() if d in (np.float16, np.float32)]
        return "fp16" if floats.count(np.float16) > floats.count(np.float32) else "fp32"

    def make_state(self) -> dict[str, np.ndarray]:
        """A fresh state, as Core ML makes one: zeros, in the dtype the program declares (fp16)."""
        return {n: np.zeros(self.state_shapes[n], self.dtypes[n]) for n in self.state_names}

    def predict(self, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None,
                ) -> dict[str, Any]:
        """Run the program on `inputs`; `state` (from `make_state`) is read and updated in place."""
        missing = [n for n in self.input_names if n not in inputs] + \
            [n for n in self.state_names if state is None or n not in state]
        if missing:
            raise ValueError(f"the program needs {missing}")
        env: dict[str, Any] = {n: np.asarray(inputs[n]).astype(self.dtypes[n]) for n in self.input_names}
        env.update({n: state[n] for n in self.state_names})  # read_state / coreml_update_state use them
        for op in self.function.operations:
            self._run(op, env, state or {})
        return {n: env[n] for n in self.output_names}

    def _run(self, op: Any, env: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        if op.op_type == "const":
            env[op.outputs[0].name] = np.asarray(op.outputs[0].val)
            return
        if op.op_type not in OPS:
            raise UnsupportedOpError(f"the Core ML evaluator has no op {op.op_type!r} (output "
                                     f"{op.outputs[0].name!r}); nothing was skipped")
        args = {k: _value(v, env) for k, v in op.inputs.items()}
        if op.op_type == "coreml_update_state":
            name = op.inputs["state"].name
            state[name][...] = np.asarray(args["value"], np.float32).astype(state[name].dtype)
            env[op.outputs[0].name] = state[name].copy()
            return
        results = OPS[op.op_type](**args)
        results = results if isinstance(results, tuple) else (results,)
        for var, result in zip(op.outputs, results):
            dtype = self.dtypes.get(var.name)
            env[var.name] = result if dtype is None or dtype is np.str_ or isinstance(result, str) \
                else np.asarray(result).astype(dtype)


def _tensor_type(value_type: Any) -> Any | None:
    """The tensor type of a MIL value type: a tensor's own, the tensor a state wraps, or None."""
    if value_type.HasField("stateType"):
        return value_type.stateType.wrappedType.tensorType
    return value_type.tensorType if value_type.HasField("tensorType") else None


def _value(var: Any, env: dict[str, Any]) -> Any:
    """An op input's value: a list for tuple inputs, a computed value by name, else the constant it holds."""
    if isinstance(var, (list, tuple)):
        return [_value(v, env) for v in var]
    if var.name in env:
        return env[var.name]
    if var.val is not None:
        return var.val
    raise UnsupportedOpError(f"value {var.name!r} is neither computed nor constant")
