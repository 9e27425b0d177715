"""`python -m xvit_edge.bench.profile`: where one artifact's inference time goes, op by op, written as JSON.

The artifact is exported here the way `python -m xvit_edge.export` writes it (int8: PTQ of the model on
seeded synthetic clips, `deployment.int8_checkpoint`, fine for timing and nothing else), or given with
`--artifact`. It is called `--warmup` times, then `--runs` times under the runtime's own profiler, on random
inputs of the shapes it declares:

- onnxruntime: its profiler (`SessionOptions.enable_profiling`) on the session export verifies with
  (`export.onnx.ort_session`), so after onnxruntime's graph optimisations: time per op type and per node, each
  node classed as `quantize_dequantize` (QuantizeLinear/DequantizeLinear), `int8` (any int8/uint8 input:
  the fused integer kernels, and data movement of quantized tensors) or `float` (everything else: what stays
  float in an int8 graph), with the float op types listed apart.
- ExecuTorch: its op-level profile, from an ETDump read with `executorch.devtools.Inspector`. The pip wheel
  (1.5.1) is built with event tracing: `Runtime.load_program(..., enable_etdump=True)` records every
  operator call, every XNNPACK op inside a delegate call, and each DELEGATE_CALL; the number of delegate
  calls per run is the number of partitions executed. Only timing is recorded (`debug_buffer_size=0`): a
  debug buffer too small for the intermediate outputs aborts the process. When the artifact is exported
  here, the lowered program's delegation summary (delegated subgraphs, delegated and non-delegated op
  counts) is added.

Times are per run, medians over the profiled runs where a figure is per run; a profiler adds some overhead of
its own, so `run_ms` is a little above what `python -m xvit_edge.bench` times for the same artifact.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from ..cli_types import HelpFormatter, nonnegative_int, positive_int, thread_count
from ..config import PRESETS
from ..files import OVERWRITE_HELP, check_output, printable, refuse_existing, write_text_atomic
from ..quiet import quiet_toolchains
from ..signals import terminate_as_interrupt
from .timing import median_p90

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "executorch")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
INT_TYPES = ("int8", "uint8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.bench.profile", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--runtime", choices=RUNTIMES, default="onnx", help="onnxruntime (.onnx) or ExecuTorch (.pte)")
    p.add_argument("--mode", choices=("clip", "stream"), default="clip",
                   help="the whole-clip model, or the incremental streaming step of a causal model")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: static PTQ on seeded synthetic clips (timing only says nothing of accuracy)")
    p.add_argument("--preset", help="a preset with random weights (its causal variant in stream mode), e.g. "
                                    "xvit_edge_tiny; default: the checkpoint")
    p.add_argument("--checkpoint", type=Path, help="a trained checkpoint; default: the one shipped with xvit_edge")
    p.add_argument("--artifact", type=Path,
                   help="profile this .onnx or .pte instead of exporting one (--precision and --mode then only "
                        "label the result)")
    p.add_argument("--threads", type=thread_count, default=1, help="the runtime's intra-op threads")
    p.add_argument("--warmup", type=nonnegative_int, default=3, help="calls before profiling")
    p.add_argument("--runs", type=positive_int, default=20, help="profiled calls")
    p.add_argument("--top", type=positive_int, default=15, help="how many of the slowest nodes to list")
    p.add_argument("--out", type=Path, help="the JSON written; default profile_RUNTIME_MODE_PRECISION.json")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--verbose", action="store_true",
                   help="show the export toolchains' own warnings and log lines, hidden by default")
    return p


SUFFIXES = {"onnx": ".onnx", "executorch": ".pte"}


def check_args(args: argparse.Namespace, out: Path) -> None:
    """Refuse what would fail after minutes of exporting, or in a runtime's own words (ValueError)."""
    check_output(out, "--out", create_folders=True)
    refuse_existing({"--out": out}, args.overwrite)
    if args.artifact is not None:
        if not args.artifact.is_file():
            raise ValueError(f"--artifact {printable(args.artifact)}: no such file")
        if args.artifact.suffix != SUFFIXES[args.runtime]:
            other = next((r for r, x in SUFFIXES.items() if x == args.artifact.suffix), None)
            raise ValueError(f"--artifact {printable(args.artifact)} is not a {SUFFIXES[args.runtime]} file for "
                             f"--runtime {args.runtime}" + (f"; add --runtime {other}" if other else ""))
    if args.preset is not None and args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset}: unknown; presets: {', '.join(PRESETS)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    terminate_as_interrupt()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    out = args.out or Path(f"profile_{args.runtime}_{args.mode}_{args.precision}.json")
    try:
        check_args(args, out)
        with tempfile.TemporaryDirectory() as tmp, quiet_toolchains(args.verbose):
            result = measure(args, Path(tmp))
        write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    except (ValueError, OSError, RuntimeError) as e:  # CheckpointError, ExportError; a runtime refusing a file
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    log.info("%s %s %s: %.2f ms per run (median); by kind: %s; top op types: %s", args.runtime, args.mode,
             args.precision, result["run_ms"]["median"],
             ", ".join(f"{k} {v['ms']:.2f} ms" for k, v in result["by_kind"].items()),
             ", ".join(f"{o['op_type']} {o['ms']:.2f} ms" for o in result["by_op_type"][:5]))
    log.info("wrote %s", printable(out))
    return 0


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Export (unless --artifact) into `tmp` and profile: the JSON record."""
    if args.artifact is not None:
        path, model, report = args.artifact, {"artifact": str(args.artifact)}, {}
    else:
        path, model, report = export_artifact(args.runtime, args.mode, args.precision, args.preset,
                                              args.checkpoint, tmp)
    profile = profile_onnx if args.runtime == "onnx" else profile_executorch
    try:
        result = profile(path, args.threads, args.warmup, args.runs, args.top, tmp)
    except Exception as e:  # noqa: BLE001 - onnxruntime and ExecuTorch raise their own types for a bad file
        raise RuntimeError(f"{printable(path)}: {args.runtime} cannot run it ({str(e).strip()[-200:]})") from e
    if report.get("delegation"):
        result["delegation"] = report["delegation"]
    result = {"runtime": args.runtime, "mode": args.mode, "precision": args.precision, "model": model,
              "artifact": Path(path).name, "threads": args.threads, "warmup": args.warmup, "runs": args.runs,
              **result}
    return result


def export_artifact(runtime: str, mode: str, precision: str, preset: str | None, checkpoint: Path | None,
                    folder: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Export the model named on the command line; (artifact, what model it is, the export's report)."""
    from ..assets import default_checkpoint
    from ..config import Preprocessing, causal_variant, get_config
    from ..export import export
    from ..model import XViT
    from ..model.weights import load_checkpoint
    from .deployment import int8_checkpoint

    torch.manual_seed(0)
    if preset is not None:
        cfg = get_config(preset)
        cfg = causal_variant(cfg) if mode == "stream" else cfg
        net = XViT(cfg).eval()
        labels, pre = [str(i) for i in range(cfg.num_classes)], Preprocessing.for_size(cfg.img_size)
        described = {"preset": cfg.name, "weights": "random"}
    else:
        checkpoint = checkpoint or default_checkpoint()
        net, meta = load_checkpoint(checkpoint)
        net.eval()
        labels, pre = meta.labels, meta.preprocessing
        described = {"preset": meta.config.name, "checkpoint": Path(checkpoint).name}
    quantized = None
    if precision == "int8":
        quantized = int8_checkpoint(net, labels, pre, folder / "int8.pt", stream=mode == "stream")
    # Not verified: a random-weight int8 model can miss the parity bar, and this measures time only.
    art = export(net, labels, pre, "onnx" if runtime == "onnx" else "executorch", folder, precision,
                 verify=False, mode=mode, quantized=quantized)
    return art.path, described, art.report


def random_inputs(shapes: list[list[int]]) -> list[torch.Tensor]:
    """One random tensor per declared input shape (a symbolic dimension taken as 1)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn([d if d > 0 else 1 for d in shape], generator=g) for shape in shapes]


def summarise(nodes: list[dict[str, Any]], runs: int, top: int) -> dict[str, Any]:
    """Per-run totals by op type and by kind, and the slowest nodes, from `nodes` ({name, op_type, kind, us}:
    one entry per node and run)."""
    per_node: dict[str, dict[str, Any]] = {}
    for n in nodes:
        entry = per_node.setdefault(n["name"], {k: v for k, v in n.items() if k != "us"} | {"us": 0.0})
        entry["us"] += n["us"]
    total = sum(n["us"] for n in per_node.values()) or 1.0
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: {"ms": 0.0, "nodes": 0})
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: {"ms": 0.0, "nodes": 0})
    for n in per_node.values():
        for table, key in ((by_type, n["op_type"]), (by_kind, n["kind"])):
            table[key]["ms"] += n["us"] / runs / 1e3
            table[key]["nodes"] += 1
    ranked = sorted(per_node.values(), key=lambda n: -n["us"])
    return {
        "ops_ms": total / runs / 1e3,
        "by_op_type": [{"op_type": k, "ms": v["ms"], "share": v["ms"] * runs * 1e3 / total, "nodes": v["nodes"]}
                       for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]["ms"])],
        "by_kind": {k: {"ms": v["ms"], "share": v["ms"] * runs * 1e3 / total, "nodes": v["nodes"]}
                    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]["ms"])},
        "top_nodes": [{k: v for k, v in n.items() if k != "us"} | {"ms": n["us"] / runs / 1e3} for n in ranked[:top]],
    }


def run_stats(samples_ms: list[float]) -> dict[str, float]:
    median, p90 = median_p90(samples_ms)
    return {"median": median, "p90": p90, "min": min(samples_ms)}


def profile_onnx(path: Path, threads: int, warmup: int, runs: int, top: int, folder: Path) -> dict[str, Any]:
    """onnxruntime's profile of `path` (see the module's docstring)."""
    from ..export.onnx import PRECISION_CONFIG, onnx_io_shapes, ort_session, u8s8_saturates

    session = ort_session(path, threads, profile_prefix=str(folder / "onnxruntime"))
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), random_inputs(onnx_io_shapes(path)[0]))}
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    calls = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[warmup:]
    start = calls[0]["ts"]  # warm-up calls are in the trace too
    nodes = []
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        op, types = e["args"]["op_name"], [t for shape in e["args"].get("input_type_shape", []) for t in shape]
        kind = "quantize_dequantize" if op in QDQ_OPS else "int8" if any(t in INT_TYPES for t in types) else "float"
        nodes.append({"name": e["name"][:-len("_kernel_time")], "op_type": op, "kind": kind, "us": e["dur"]})
    result = {"run_ms": run_stats([c["dur"] / 1e3 for c in calls]), **summarise(nodes, runs, top)}
    float_types = {n["op_type"] for n in nodes if n["kind"] == "float"}
    result["float_op_types"] = [o for o in result["by_op_type"] if o["op_type"] in float_types]
    result["quantize_dequantize"] = [o for o in result["by_op_type"] if o["op_type"] in QDQ_OPS]
    result["session"] = {"graph_optimization_level": "ORT_ENABLE_ALL",
                         PRECISION_CONFIG: "1" if u8s8_saturates() else "unset"}
    return result


def profile_executorch(path: Path, threads: int, warmup: int, runs: int, top: int, folder: Path) -> dict[str, Any]:
    """ExecuTorch's ETDump profile of `path`, read with the Inspector (see the module's docstring)."""
    import warnings

    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime, Verification

    from ..export.executorch import pte_io_shapes

    _unsafe_reset_threadpool(threads)  # before any program is loaded (as `deployment.measure`)
    program = Runtime.get().load_program(str(path), verification=Verification.Minimal, enable_etdump=True,
                                         debug_buffer_size=0)
    method = program.load_method("forward")
    inputs = random_inputs(pte_io_shapes(path)[0])
    with torch.inference_mode():
        for _ in range(warmup + runs):
            method.execute(inputs)
    etdump = folder / "program.etdp"
    program.write_etdump_result_to_file(str(etdump), str(folder / "debug.bin"))
    with warnings.catch_warnings():  # "Output Buffer not found": no intermediate outputs were asked for
        warnings.simplefilter("ignore")
        inspector = Inspector(etdump_path=str(etdump))
    nodes, run_ms, delegate_calls, native = [], [], 0, set()
    for block in inspector.event_blocks:
        for event in block.events:
            raw = list(event.perf_data.raw)[warmup:] if event.perf_data is not None else []
            if not raw:
                continue
            if event.name == "Method::execute":
                run_ms = raw
            elif event.name == "DELEGATE_CALL":
                delegate_calls += 1
            elif event.is_delegated_op or event.name.startswith("native_call_"):
                op = re.sub(r" #\d+$", "", event.name).removeprefix("native_call_")
                if not event.is_delegated_op:
                    native.add(op)
                kind = "delegated" if event.is_delegated_op else "not_delegated"
                name = f"{block.name}/{event.name}/{len(nodes)}"
                nodes.extend({"name": name, "op_type": op, "kind": kind, "us": ms * 1e3} for ms in raw)
    # OPERATOR_CALL wraps each native call and DELEGATE_CALL each partition: left out of the op sums, which
    # would otherwise count those ops twice.
    result = {"run_ms": run_stats(run_ms), **summarise(nodes, len(run_ms) or runs, top)}
    result["delegate_calls_per_run"] = delegate_calls
    result["not_delegated_ops"] = sorted(native)
    return result


if __name__ == "__main__":
    sys.exit(main())
