"""ONNX: torch.onnx's dynamo exporter, checked with onnx.checker, labels and preprocessing as metadata."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .target import Target

if TYPE_CHECKING:
    from .subject import Subject


# onnxruntime's QDQS8ToU8Transformer shifts int8 activations to uint8 so that x86 runs its u8s8 integer
# kernels; on AVX2 without VNNI those use VPMADDUBSW, whose 16-bit pair sums saturate with full-range int8
# weights (onnxruntime's quantization docs warn of it). On a trained xvit_edge_nano it took the int8 model
# from 41.5 dB to 21.3 dB against the converted PyTorch model, and timed the same with or without it. Without
# it, onnxruntime keeps the s8s8 kernels. fp32 graphs have no QDQ nodes, so this changes nothing for them.
ORT_DISABLED_OPTIMIZERS: tuple[str, ...] = ("QDQS8ToU8Transformer",)


def ort_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for our artifacts (fp32 or int8 QDQ): all graph optimisations except
    `ORT_DISABLED_OPTIMIZERS`, and `threads` intra-op threads if given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, metadata: dict[str, str],
                input_names: list[str], output_names: list[str]) -> dict:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, dynamo=True, external_data=False, verbose=False,
                                    input_names=input_names, output_names=output_names)
    program.save(str(path))
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return {"opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "checker": "passed", "metadata_keys": sorted(metadata)}


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
            "graph_optimization_level": "ORT_ENABLE_ALL", "disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
            "why": "QDQS8ToU8Transformer moves int8 activations to uint8 for x86 u8s8 kernels, which saturate "
                   "on AVX2 CPUs without VNNI; leave it off (InferenceSession(..., disabled_optimizers=[...]))"}}
