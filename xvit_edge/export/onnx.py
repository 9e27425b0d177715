"""ONNX: torch.onnx's dynamo exporter, checked with onnx.checker, labels and preprocessing as metadata."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


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


def run_onnx(path: Path, inputs: list[tuple[torch.Tensor, ...]]) -> list[list[torch.Tensor]]:
    """Run the model with onnxruntime on each tuple of inputs; all outputs."""
    call = load_onnx(path)
    return [call(args) for args in inputs]


def metadata_for(labels: list[str], preprocessing: dict, config: dict) -> dict[str, str]:
    return {"labels": json.dumps(labels), "preprocessing": json.dumps(preprocessing),
            "xvit_config": json.dumps(config)}
