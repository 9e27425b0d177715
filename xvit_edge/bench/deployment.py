"""Section 2: latency (median, p90) and size of each deployable form, with 1 and 2 threads.

Every (runtime, threads) pair is timed in a fresh subprocess: ExecuTorch's thread pool can only be sized
before a program is loaded, and a fresh process keeps one runtime's allocations and threads from colouring
another's. The fp32 and int8 artifacts of one runtime share that process (an ExecuTorch process spends about
7 s importing before it times anything), timed side by side (a round calls each once, in turn), except
onnxruntime's, timed one after the other (`timing.time_calls` says why).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..config import Preprocessing, get_config
from ..export import ExportError, export
from ..model import XViT
from ..model.weights import load_checkpoint, save_checkpoint
from .timing import time_calls

log = logging.getLogger(__name__)


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def measure(runtime: str, jobs: list[tuple[str, list[list[int]]]], threads: int, repeats: int,
            warmup: int) -> list[dict]:
    """Time one call of each `[path, input_shapes]` of `jobs` on `runtime` in this process (called in a fresh
    subprocess); the inputs are random tensors of those shapes (a clip: one; a streaming step: frame and state)."""
    if runtime == "executorch":
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        _unsafe_reset_threadpool(threads)  # before any program is loaded: resetting later crashes
    elif runtime == "onnxruntime":
        from ..export.onnx import ort_session
    elif runtime != "eager":
        raise ValueError(f"unknown runtime {runtime!r}")
    fns = []
    for path, shapes in jobs:
        xs = [torch.randn(shape) for shape in shapes]
        if runtime == "eager":
            model = load_checkpoint(path)[0]
            fns.append(lambda model=model, xs=xs: model(*xs))
        elif runtime == "executorch":
            method = Runtime.get().load_program(path).load_method("forward")
            fns.append(lambda method=method, xs=xs: method.execute(xs))
        else:
            session = ort_session(path, threads)  # the session the runtime and the export's parity check use
            feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), xs)}
            fns.append(lambda session=session, feed=feed: session.run(None, feed))
    with torch.inference_mode():  # onnxruntime: one thread pool per session, so not side by side (time_calls)
        timings = time_calls(fns, repeats=repeats, warmup=warmup, threads=threads,
                             side_by_side=runtime != "onnxruntime")
    return [t.to_dict() for t in timings]


def measure_in_subprocess(runtime: str, jobs: list[tuple[Path, list[list[int]]]], threads: int, repeats: int,
                          warmup: int) -> list[dict]:
    """`measure` in a fresh process (see the module's docstring)."""
    args = json.dumps({"runtime": runtime, "jobs": [[str(p), shapes] for p, shapes in jobs], "threads": threads,
                       "repeats": repeats, "warmup": warmup})
    done = subprocess.run([sys.executable, "-m", "xvit_edge.bench.deployment", args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"timing {runtime} ({threads} threads) failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def int8_checkpoint(model: XViT, labels: list[str], pre: Preprocessing, path: Path, stream: bool = False):
    """PTQ of `model` on two batches of seeded synthetic clips, saved and rebuilt as export does it (with its
    int8 streaming step when `stream`): the kind of clips export verifies on (`verify.sample_inputs`). Measured
    against the converted model, ExecuTorch int8: the trained default checkpoint 36.9 dB; the random-weight
    `xvit_edge_tiny` 24.2 dB (28.5 dB when calibrated on noise), below the 30 dB bar, so its int8 rows are
    reported as refused. Fine for timing and size; says nothing about
    accuracy (see section 3)."""
    from ..export.verify import sample_inputs
    from ..quantize import load_quantized, quantize_ptq, save_quantized

    clips = torch.cat(sample_inputs(model.config, 4, seed=1, preprocessing=pre))
    batches = [clips[:2], clips[2:]]
    save_quantized(path, quantize_ptq(model, batches, max_batches=2, stream=stream), labels, pre)
    return load_quantized(path, stream=stream)


def _coreml(model: XViT, labels: list[str], pre: Preprocessing, tmp: Path, failed: list[dict]) -> dict:
    """Core ML at each precision: the fp16 package's size and ops, and every precision's parity against the
    eager model (its saved program evaluated in numpy); a refused one is listed in `failed`."""
    coreml: dict = {"parity": {}}
    for precision in ("fp16", "fp32", "int8"):
        try:
            art = export(model, labels, pre, "coreml", tmp, precision, samples=2)
        except ExportError as e:
            log.warning("coreml %s: %s", precision, e)
            failed.append({"form": f"coreml {precision}", "error": str(e)})
            continue
        parity = art.report["parity"]
        coreml["parity"][precision] = {k: parity[k] for k in ("max_abs_diff", "sqnr_db", "top1_agreement")}
        if precision == "fp16":
            coreml.update(size_mb=_size_mb(art.path), op_counts=art.report["coreml"]["op_counts"],
                          weight_dtypes=art.report["coreml"]["weight_dtypes"],
                          apple_runtime=art.report["coreml"]["apple_runtime"])
    return coreml


def run(preset: str, threads: list[int], repeats: int, warmup: int, checkpoint: Path | None = None) -> dict:
    """Export a model and time every form: eager fp32, ExecuTorch and ONNX in fp32 and int8 (static PTQ int8,
    XNNPACK / QDQ), with each thread count; Core ML fp16 size and ops. The model is the preset with random
    weights (latency does not depend on them), or the trained model of `checkpoint` (the default checkpoint's
    artifacts are what a user exports first)."""
    torch.manual_seed(0)
    if checkpoint is None:
        cfg = get_config(preset)
        model = XViT(cfg).eval()
        labels = [str(i) for i in range(cfg.num_classes)]
        pre = Preprocessing.for_size(cfg.img_size)
    else:
        model, meta = load_checkpoint(checkpoint)
        cfg, labels, pre = meta.config, meta.labels, meta.preprocessing
        model.eval()
    shape = [1, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size]
    rows, coreml = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_checkpoint(tmp / "model.pt", model, labels, pre)
        forms = [("eager fp32", "eager", tmp / "model.pt", None)]
        for target in ("executorch", "onnx"):
            art = export(model, labels, pre, target, tmp, "fp32", samples=2)
            forms.append((f"{target} fp32", "executorch" if target == "executorch" else "onnxruntime", art.path,
                          art.report))
        quantized = int8_checkpoint(model, labels, pre, tmp / "int8.pt")
        failed = []
        for target in ("executorch", "onnx"):
            try:
                art = export(model, labels, pre, target, tmp, "int8", samples=2, quantized=quantized)
            except ExportError as e:  # the parity check refused the artifact: a result, reported as such
                log.warning("%s int8: %s", target, e)
                failed.append({"form": f"{target} int8", "error": str(e)})
                continue
            forms.append((f"{target} int8", "executorch" if target == "executorch" else "onnxruntime", art.path,
                          art.report))
        coreml = _coreml(model, labels, pre, tmp, failed)
        timings: dict[tuple[str, int], dict] = {}
        for runtime in dict.fromkeys(f[1] for f in forms):
            group = [f for f in forms if f[1] == runtime]
            for n in threads:
                for (label, *_), timing in zip(group, measure_in_subprocess(
                        runtime, [(f[2], [shape]) for f in group], n, repeats, warmup)):
                    timings[label, n] = timing
                    log.info("%s, %d threads: %.1f ms", label, n, timing["median_ms"])
        for label, runtime, path, report in forms:
            size = _size_mb(path) if runtime != "eager" else sum(p.numel() * 4 for p in model.parameters()) / 1e6
            parity = (report or {}).get("parity", {})
            int8 = "int8" in label  # fp32 is held to a max abs diff vs eager, int8 to an SQNR (export's bars)
            for n in threads:
                rows.append({"form": label, "runtime": runtime, "size_mb": size, **timings[label, n],
                             "parity_max_abs_diff": None if int8 else parity.get("max_abs_diff"),
                             "parity_sqnr_db": parity.get("sqnr_db") if int8 else None})
    return {"preset": cfg.name, "checkpoint": None if checkpoint is None else Path(checkpoint).name,
            "input_shape": shape, "rows": rows, "failed": failed, "coreml": coreml}


if __name__ == "__main__":  # the subprocess side of measure_in_subprocess
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
