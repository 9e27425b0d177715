"""ExecuTorch: lower to the XNNPACK delegate, write a .pte, run it with the ExecuTorch runtime."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import ExportError
from .layer_norm import decompose_layer_norm
from .target import Target

if TYPE_CHECKING:
    from .subject import Subject

log = logging.getLogger(__name__)

# The ops that carry the FLOPs: each must run inside XNNPACK, never in the portable kernels.
HEAVY_OPS = ("aten_linear", "aten_convolution", "aten_bmm", "aten_mm", "aten_addmm", "aten_matmul")
# Quantize/dequantize left outside XNNPACK would run in ExecuTorch's slow portable kernels.
QUANT_OPS = ("quantized_decomposed_",)


def export_pte(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> dict:
    """Write `path` (.pte) for `model(*example)`, its LayerNorms written as XNNPACK ops (`layer_norm`) so that
    they stay inside the delegate; returns the delegation summary per op type."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    program = decompose_layer_norm(torch.export.export(model, example))
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program().graph_module)
    table = info.get_operator_delegation_dataframe()
    ops = {row.op_type: {"delegated": int(row.occurrences_in_delegated_graphs),
                         "not_delegated": int(row.occurrences_in_non_delegated_graphs)}
           for row in table.itertuples() if row.op_type != "Total"}
    path.write_bytes(edge.to_executorch().buffer)
    summary = {"delegated_subgraphs": info.num_delegated_subgraphs, "ops": ops,
               "heavy_ops_not_delegated": sorted(k for k, v in ops.items()
                                                 if k.startswith(HEAVY_OPS) and v["not_delegated"])}
    log.info("ExecuTorch delegation:\n%s", info.get_summary())
    return summary


# The thread count the ExecuTorch pool was given in this process (None: never set).
_pool_threads: int | None = None
_loaded = False


def load_pte(path: str | Path, threads: int | None = None) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
    """Load the .pte's `forward` once; returns `call(inputs) -> outputs` (copies, safe to keep).

    `threads` sizes ExecuTorch's thread pool. The pool can only be sized before the first program of the
    process is loaded (resizing it later crashed the process), so a later, different request is ignored
    with a warning.
    """
    global _pool_threads, _loaded
    from executorch.runtime import Runtime

    if threads is not None and threads != _pool_threads:
        if _loaded:
            log.warning("ExecuTorch's thread pool is already in use with %s threads; %d requested, not resized",
                        _pool_threads or "its default number of", threads)
        else:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)
            _pool_threads = threads
    method = Runtime.get().load_program(str(path)).load_method("forward")
    _loaded = True
    # The runtime reads each input's memory as a dense row-major array, so strided views (a frame from
    # preprocess_frames is a permuted channels-last layout) must be made contiguous first.
    return lambda inputs: [y.clone() for y in method.execute([x.contiguous() for x in inputs])]


def pte_io_shapes(path: str | Path) -> tuple[list[list[int]], list[list[int]]]:
    """The input and output tensor shapes the .pte's `forward` declares (nothing is run)."""
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(str(path)).load_method("forward").metadata
    return ([list(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())],
            [list(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())])


def looks_like_pte(path: str | Path) -> bool:
    """Whether the file carries ExecuTorch's flatbuffer identifier (`ET..` at byte 4): the runtime aborts the
    process on some files that are not programs, so anything else is refused before it sees them."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:6] == b"ET"


def pool_threads() -> int:
    """Threads in this process's ExecuTorch thread pool (what a loaded program actually runs on)."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

    return int(_threadpool_get_thread_count())


def run_pte(path: Path, inputs: list[tuple[torch.Tensor, ...]]) -> list[list[torch.Tensor]]:
    """Run the .pte's `forward` on each tuple of inputs with the ExecuTorch runtime; all outputs."""
    call = load_pte(path)
    return [call(args) for args in inputs]


def quant_ops_not_delegated(delegation: dict) -> list[str]:
    return sorted(k for k, v in delegation["ops"].items() if k.startswith(QUANT_OPS) and v["not_delegated"])


class ExecuTorchTarget(Target):
    """A .pte lowered to XNNPACK; every heavy op (and for int8 every quantize/dequantize) must be delegated."""

    name, title, extension = "executorch", "ExecuTorch", ".pte"
    packages = ("executorch",)
    int8_schemes = ("static", "dynamic")  # XNNPACK runs dynamically quantized linears (qd8)

    def write(self, subject: Subject, path: Path) -> dict[str, Any]:
        program = subject.program()
        with torch.no_grad():
            return {"delegation": export_pte(program.module, program.example, path)}

    def check(self, report: dict[str, Any], subject: Subject) -> None:
        delegation = report["delegation"]
        if delegation["heavy_ops_not_delegated"]:
            raise ExportError(f"heavy ops left outside XNNPACK: {delegation['heavy_ops_not_delegated']}")
        if subject.precision == "int8" and quant_ops_not_delegated(delegation):
            raise ExportError(f"quantize/dequantize ops left outside XNNPACK: {quant_ops_not_delegated(delegation)}")

    def runner(self, path: Path) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
        return load_pte(path)

    def summary(self, report: dict[str, Any], precision: str) -> str:
        return (f"; {report['delegation']['delegated_subgraphs']} XNNPACK subgraphs, every linear/conv/matmul and "
                "LayerNorm delegated")
