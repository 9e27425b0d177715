"""ONNX: torch.onnx's dynamo exporter, checked with onnx.checker, labels and preprocessing as metadata."""

from __future__ import annotations

import functools
import logging
import platform
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .target import Target

if TYPE_CHECKING:
    from .subject import Subject

log = logging.getLogger(__name__)


# int8 on onnxruntime's CPU provider, measured on the shipped xvit_edge_nano (PTQ, 200 synthetic clips) and a
# random-weight xvit_edge_tiny (24 clips), onnxruntime 1.32, on an AMD EPYC whose /proc/cpuinfo lists avx2 and
# fma but none of avx512_vnni, avx_vnni, amx_int8; medians of interleaved calls in one process, one thread:
#
# - On x86, onnxruntime fuses int8 x int8 QDQ groups into QGemm/QLinear kernels, but MLAS has no AVX2 kernel
#   for s8 x s8: nano's 21 QGemms took 13.7 of its 24 ms (6x their u8 x s8 time). That, with the rewrite
#   below turned off, is why int8 ran slower than fp32 (nano 15.2 vs 6.8 ms, tiny 411 vs 150 ms).
# - QDQS8ToU8Transformer (on by default on x86) moves activations to uint8 for the u8 x s8 kernels, which on
#   x86 without VNNI or AMX add pairs of products with VPMADDUBSW in saturating 16 bits: a row of 255s times
#   a column of 127s came out 125 output steps off, and nano fell from 37.1 to 17.9 dB against the converted
#   model (97.5% top-1 agreement). That is the whole accuracy loss. With VNNI/AMX the sums are 32-bit.
#   `session.x64quantprecision=1` has onnxruntime move the weights to uint8 too (u8 x u8: exact, somewhat
#   slower): 37.0 dB, 100%. It is set only where `u8s8_saturates()`: elsewhere it would give up VNNI's u8 x s8.
# - That transformer only converts a QuantizeLinear with a single consumer; the others stay int8, and the
#   mixed s8/u8 pairs block onnxruntime's other QDQ fusions (nano kept 114 DequantizeLinear). So the exporter
#   writes uint8 activations itself (`uint8_activations`, exact): 51 are left.
# - Result (the default now): nano 0.87-1.04x fp32 over repeated runs, tiny 1.13-1.15x. The same graph without
#   the precision setting (u8 x s8, what a VNNI CPU runs, exactly there): nano 0.92-1.0x, tiny 1.28x. What is
#   left is float (attention matmuls, softmax, GELU, LayerNorm, the float adds and concatenations) and the
#   QuantizeLinear/DequantizeLinear around it, which the quantization scheme puts there
#   (`python -m xvit_edge.bench.profile --runtime onnx --precision int8` shows where).
# - Measured and not better: 7-bit weights (u8 x s8 without saturation) 23.5 dB against the converted model;
#   7-bit activations (the same, at half the cost: 29.4 dB against fp32 where exact 8-bit gives 30.2; tiny 1.34x
#   fp32 against 1.14x at 1 thread) need their own calibration and a Clip before every QuantizeLinear, and would
#   waste a bit on VNNI and ARM (docs/quantization.md);
#   onnxruntime's quantize_dynamic 21.0 dB, as fast as fp32 on nano; its quantize_static, QDQ or QOperator,
#   slower than ours; ORT_ENABLE_EXTENDED the same as ORT_ENABLE_ALL.
# fp32 graphs have no QDQ nodes, so none of this changes anything for them.
PRECISION_CONFIG = "session.x64quantprecision"
# CPU flags with which MLAS's u8 x s8 kernels add in 32 bits (VPDPBUSD, AMX TDPBUSD).
EXACT_U8S8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def u8s8_saturates(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether onnxruntime's uint8 x int8 kernels add pairs of products in saturating 16 bits on this CPU: x86
    without VNNI or AMX; also where the CPU's flags cannot be read (exact but slower is the safe side). ARM
    has no such kernels (and onnxruntime compiles the precision setting out there)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return True
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return not flags & EXACT_U8S8_FLAGS


def ort_session(path: str | Path, threads: int | None = None, profile_prefix: str | None = None):
    """An onnxruntime CPU session for our artifacts (fp32 or int8 QDQ): all graph optimisations, exact int8
    matrix products (`session.x64quantprecision` where `u8s8_saturates()`), `threads` intra-op threads if given,
    and onnxruntime's profiler writing to `profile_prefix`*.json if given."""
    import onnxruntime as ort

    def options(precise: bool):
        o = ort.SessionOptions()
        if threads is not None:
            o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
        if profile_prefix is not None:
            o.enable_profiling, o.profile_file_prefix = True, profile_prefix
        if precise:
            o.add_session_config_entry(PRECISION_CONFIG, "1")
        return o

    providers = ["CPUExecutionProvider"]
    if not u8s8_saturates():
        return ort.InferenceSession(str(path), options(False), providers=providers)
    try:
        return ort.InferenceSession(str(path), options(True), providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/RuntimeException types
        if "replace the existing tensor" not in str(e):  # not that case: a bad file, said as onnxruntime says it
            raise
        # int8 artifacts exported before `uint8_activations` share zero-point initializers between weights,
        # and onnxruntime's weight rewrite fails on them ("Attempt to replace the existing tensor"). Run them
        # as before: int8 activations without the uint8 rewrite, exact and slow.
        log.warning("%s: onnxruntime refused its exact int8 setting (%s); running without its uint8 rewrite "
                    "(exact, slower). Export the model again for uint8 activations.", path, str(e)[-200:])
        return ort.InferenceSession(str(path), options(False), providers=providers,
                                    disabled_optimizers=["QDQS8ToU8Transformer"])


# Ops through which a weight reaches the matrix product it feeds (the exporter transposes linear weights).
_WEIGHT_PATH = ("Transpose", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")
_MATMULS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def uint8_activations(model) -> bool:
    """Rewrite an int8 QDQ graph (PT2E's: int8 activations and weights) for onnxruntime, in place; exact.
    Returns whether anything changed (running it again changes nothing).

    - Activations become uint8: every QuantizeLinear with an int8 zero point whose consumers are all
      DequantizeLinear nodes (and whose output is not a graph output) gets the zero point + 128, and so do its
      consumers; the integers it writes are the old ones + 128, so every dequantized value is the same.
    - Constant operands that do not feed a matrix product (the attention scale, multiplied into q) become
      uint8 too, so that the binary ops onnxruntime fuses (QLinearMul) see one integer type.
    - Weights stay int8 (u8 x s8 kernels; see the comment above `PRECISION_CONFIG`), each DequantizeLinear of
      a constant with one consumer and initializers of its own: onnxruntime's int8 -> uint8 weight rewrite
      names its results after its inputs and fails when two nodes share one."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    uses = {name: len(nodes) for name, nodes in consumers.items()}
    outputs = {o.name for o in g.output}

    def int8_const(name: str) -> bool:
        return name in inits and inits[name].data_type == onnx.TensorProto.INT8

    def plus_128(name: str, new_name: str) -> str:
        if new_name not in inits:
            value = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            inits[new_name] = numpy_helper.from_array(value.astype(np.uint8), new_name)
            g.initializer.append(inits[new_name])
        return new_name

    def feeds_matmul(name: str) -> bool:
        return any(c.op_type in _MATMULS or (c.op_type in _WEIGHT_PATH and feeds_matmul(c.output[0]))
                   for c in consumers.get(name, []))

    changed, retyped = False, set()
    for node in list(g.node):
        if node.op_type == "QuantizeLinear" and len(node.input) == 3 and int8_const(node.input[2]):
            users = consumers.get(node.output[0], [])
            if node.output[0] in outputs or not users or any(
                    u.op_type != "DequantizeLinear" or len(u.input) < 3 or not int8_const(u.input[2]) for u in users):
                continue
            for n in (node, *users):
                n.input[2] = plus_128(n.input[2], n.input[2] + "_u8")
            retyped.add(node.output[0])
            changed = True
    nodes = []
    for node in g.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            nodes.append(node)
            continue
        weight = feeds_matmul(node.output[0])
        if not weight and int8_const(node.input[0]):
            node.input[0] = plus_128(node.input[0], f"{node.output[0]}_data_u8")
            if len(node.input) == 3:
                node.input[2] = plus_128(node.input[2], f"{node.output[0]}_zero_point_u8")
            changed = True
        users = consumers.get(node.output[0], [])
        if not weight or (len(users) <= 1 and all(uses[x] == 1 for x in node.input if x)):
            nodes.append(node)
            continue
        for k, user in enumerate(users or [None]):  # one copy per consumer, each with its own initializers
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            suffix = f"_{k}" if k else ""
            copy.output[0] = node.output[0] + suffix
            copy.name = (node.name or node.output[0]) + suffix
            for i, x in enumerate(node.input):
                if x:
                    t = onnx.TensorProto()
                    t.CopyFrom(inits[x])
                    t.name = f"{copy.output[0]}_input{i}"
                    g.initializer.append(t)
                    copy.input[i] = t.name
            if user is not None and k:
                user.input[:] = [copy.output[0] if x == node.output[0] else x for x in user.input]
            nodes.append(copy)
        changed = True
    if not changed:
        return False
    for vi in g.value_info:
        if vi.name in retyped:
            vi.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    del g.node[:]
    g.node.extend(nodes)
    used = {x for n in g.node for x in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return True


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, metadata: dict[str, str],
                input_names: list[str], output_names: list[str]) -> dict:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, dynamo=True, external_data=False, verbose=False,
                                    input_names=input_names, output_names=output_names)
    program.save(str(path))
    proto = onnx.load(str(path))
    uint8 = uint8_activations(proto)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    report = {"opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
              "checker": "passed", "metadata_keys": sorted(metadata)}
    if uint8:
        report["int8_graph"] = "uint8 activations, int8 weights (rewritten for onnxruntime; exact)"
    return report


def load_onnx(path: str | Path, threads: int | None = None) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
    """One onnxruntime session (CPU); returns `call(inputs) -> outputs`, inputs in the graph's order."""
    session = ort_session(path, threads)
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: [torch.from_numpy(y)
                           for y in session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})]


def onnx_io_shapes(path: str | Path) -> tuple[list[list[int]], list[list[int]]]:
    """The input and output tensor shapes the .onnx graph declares (symbolic dimensions as -1)."""
    session = ort_session(path)

    def dims(shape) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in shape]

    return [dims(i.shape) for i in session.get_inputs()], [dims(o.shape) for o in session.get_outputs()]


def run_onnx(path: Path, inputs: list[tuple[torch.Tensor, ...]]) -> list[list[torch.Tensor]]:
    """Run the model with onnxruntime on each tuple of inputs; all outputs."""
    call = load_onnx(path)
    return [call(args) for args in inputs]


# The subject's metadata the .onnx file carries (`metadata_props`).
METADATA_KEYS = ("labels", "preprocessing", "xvit_config", "mode", "quantization")


class OnnxTarget(Target):
    """An .onnx file (opset from torch.onnx's dynamo exporter), checked with onnx.checker, run with onnxruntime."""

    name, title, extension = "onnx", "ONNX", ".onnx"
    packages = ("onnx", "onnxruntime", "onnxscript")

    def write(self, subject: Subject, path: Path) -> dict[str, Any]:
        program, meta = subject.program(), subject.metadata()
        with torch.no_grad():
            return {"onnx": export_onnx(program.module, program.example, path,
                                        {k: meta[k] for k in METADATA_KEYS if k in meta},
                                        list(program.input_names), list(program.output_names))}

    def runner(self, path: Path) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
        return load_onnx(path)

    def sidecar(self) -> dict[str, Any]:
        """How the artifact was verified and should be run with onnxruntime."""
        return {"onnxruntime": {
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "session_config": {PRECISION_CONFIG: "1 on x86 CPUs without avx512_vnni, avx_vnni or amx_int8"},
            "why": "int8 graphs carry uint8 activations and int8 weights for onnxruntime's u8 x s8 kernels, which "
                   "on x86 without VNNI/AMX add pairs of products in saturating 16 bits; there "
                   f"SessionOptions.add_session_config_entry('{PRECISION_CONFIG}', '1') makes them exact (u8 x u8). "
                   "fp32 graphs are unaffected"}}
