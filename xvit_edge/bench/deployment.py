"""Section 2: latency (median, p90) and size of each deployable form, clip model and streaming step, with 1
and 2 threads; int8's speed-up over fp32 per runtime; ExecuTorch's XNNPACK partition count per artifact.

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
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Preprocessing, XViTConfig, causal_variant, get_config
from ..export import ExportError, export
from ..export.int8 import INT8_MIN_SQNR_DB
from ..model import XViT
from ..model.streaming import StreamingStep, StreamState, streamable
from ..model.weights import load_checkpoint, save_checkpoint
from .timing import time_calls

log = logging.getLogger(__name__)

# The int8 parity bar for a preset with random weights (timing only; see `run`).
RANDOM_WEIGHTS_INT8_MIN_SQNR_DB = 20.0


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
        if runtime == "eager":  # a checkpoint: the clip model, or its step when given frame and state
            model = load_checkpoint(path)[0]
            run_ = model if len(xs) == 1 else StreamingStep(model).eval()
            fns.append(lambda run_=run_, xs=xs: run_(*xs))
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


def int8_checkpoint(model: XViT, labels: list[str], pre: Preprocessing, path: Path, stream: bool = False,
                    scheme: str = "static"):
    """PTQ of `model` on two batches of seeded synthetic clips, saved and rebuilt as export does it (with its
    int8 streaming step when `stream`): the kind of clips export verifies on (`verify.sample_inputs`). For a
    preset with random weights, which has no training data, fine for timing and size, saying nothing about
    accuracy (see section 3); and for the dynamic `scheme` of any model, whose int8 form depends on the
    weights alone (its activations are quantized per call; the clips only drive the weight observers)."""
    from ..export.verify import sample_inputs
    from ..quantize import load_quantized, quantize_ptq, save_quantized

    clips = torch.cat(sample_inputs(model.config, 4, seed=1, preprocessing=pre))
    batches = [clips[:2], clips[2:]]
    save_quantized(path, quantize_ptq(model, batches, max_batches=2, stream=stream, scheme=scheme), labels, pre)
    return load_quantized(path, stream=stream)


def _coreml(model: XViT, labels: list[str], pre: Preprocessing, tmp: Path, failed: list[dict],
            quantized=None) -> dict:
    """Core ML at each precision: the fp16 package's size and ops, and every precision's parity (its saved
    program evaluated in numpy; int8: W8A8 from `quantized` against its converted model, else weight-only
    against eager); a refused one is listed in `failed`."""
    coreml: dict = {"parity": {}}
    for precision in ("fp16", "fp32", "int8"):
        try:
            art = export(model, labels, pre, "coreml", tmp, precision, samples=2, quantized=quantized)
        except ExportError as e:
            log.warning("coreml %s: %s", precision, e)
            failed.append({"form": f"coreml {precision}", "error": str(e)})
            continue
        parity = art.report["parity"]
        coreml["parity"][precision] = {k: parity[k] for k in ("max_abs_diff", "sqnr_db", "top1_agreement")}
        if precision == "int8":
            coreml["int8_scheme"] = "W8A8" if quantized is not None else "weight-only"
        if precision == "fp16":
            coreml.update(size_mb=_size_mb(art.path), op_counts=art.report["coreml"]["op_counts"],
                          weight_dtypes=art.report["coreml"]["weight_dtypes"],
                          apple_runtime=art.report["coreml"]["apple_runtime"])
    return coreml


@dataclass
class Form:
    """One deployable form of one mode: what is timed, in which runtime, with which inputs."""

    label: str  # e.g. "executorch int8"
    runtime: str  # eager, executorch or onnxruntime
    mode: str  # clip or stream (the incremental step)
    precision: str
    path: Path
    shapes: list[list[int]]
    report: dict | None = None


def input_shapes(config: XViTConfig, mode: str) -> list[list[int]]:
    """A clip, or the step's frame and state."""
    frame = [config.in_chans, config.img_size, config.img_size]
    if mode == "clip":
        return [[1, config.num_frames, *frame]]
    return [[1, *frame]] + [list(t.shape) for t in StreamState.zeros(config).as_tuple()]


# What is timed: (label, target, precision, int8 scheme); dynamic int8 is an ExecuTorch scheme.
FORMS = (("executorch fp32", "executorch", "fp32", None), ("onnx fp32", "onnx", "fp32", None),
         ("executorch int8", "executorch", "int8", "static"), ("onnx int8", "onnx", "int8", "static"),
         ("executorch int8 dynamic", "executorch", "int8", "dynamic"))


def _forms(model: XViT, labels: list[str], pre: Preprocessing, tmp: Path, mode: str, quantized: dict,
           failed: list[dict], int8_min_sqnr: float) -> list[Form]:
    """Eager, then `FORMS` of `model` in `mode` (`quantized`: the int8 checkpoint of each scheme); an int8
    artifact below `int8_min_sqnr` against its converted model is refused and goes to `failed`."""
    shapes = input_shapes(model.config, mode)
    ckpt = tmp / f"model_{mode}.pt"
    save_checkpoint(ckpt, model, labels, pre)
    forms = [Form("eager fp32", "eager", mode, "fp32", ckpt, shapes)]
    for label, target, precision, scheme in FORMS:
        try:
            art = export(model, labels, pre, target, tmp / mode / (scheme or "fp32"), precision, samples=2,
                         mode=mode, quantized=quantized.get(scheme), int8_min_sqnr=int8_min_sqnr)
        except ExportError as e:  # the parity check refused the artifact: a result, reported as such
            log.warning("%s %s: %s", label, mode, e)
            failed.append({"form": label, "mode": mode, "error": str(e)})
            continue
        runtime = "executorch" if target == "executorch" else "onnxruntime"
        forms.append(Form(label, runtime, mode, precision, art.path, shapes, art.report))
    return forms


def speedups(rows: list[dict]) -> list[dict]:
    """int8 against fp32 of the same runtime, mode and thread count, both timed in one process: the fp32
    median over the int8 median (above 1: int8 is faster)."""
    by = {(r["form"], r.get("mode", "clip"), r["threads"]): r for r in rows}
    out = []
    for (form, mode, threads), r in by.items():
        runtime, int8, scheme = form.partition(" int8")
        if not int8 or (base := by.get((f"{runtime} fp32", mode, threads))) is None:
            continue
        out.append({"runtime": runtime, "scheme": scheme.strip() or "static", "mode": mode, "threads": threads,
                    "fp32_ms": base["median_ms"],
                    "int8_ms": r["median_ms"], "int8_speedup": base["median_ms"] / r["median_ms"]})
    return out


def _time(forms: list[Form], threads: list[int], repeats: int, warmup: int) -> dict[tuple[str, str, int], dict]:
    """Every form timed: one subprocess per runtime and thread count, all of that runtime's forms in it."""
    timings = {}
    for runtime in dict.fromkeys(f.runtime for f in forms):
        group = [f for f in forms if f.runtime == runtime]
        for n in threads:
            for form, timing in zip(group, measure_in_subprocess(runtime, [(f.path, f.shapes) for f in group], n,
                                                                 repeats, warmup)):
                timings[form.label, form.mode, n] = timing
                log.info("%s %s, %d threads: %.2f ms", form.label, form.mode, n, timing["median_ms"])
    return timings


def _row(form: Form, n: int, timing: dict, params_mb: float) -> dict:
    parity = (form.report or {}).get("parity", {})
    int8 = form.precision == "int8"  # fp32 is held to a max abs diff vs eager, int8 to an SQNR (export's bars)
    delegation = (form.report or {}).get("delegation")
    return {"form": form.label, "mode": form.mode, "runtime": form.runtime,
            "size_mb": params_mb if form.runtime == "eager" else _size_mb(form.path), **timing,
            "parity_max_abs_diff": None if int8 else parity.get("max_abs_diff"),
            "parity_sqnr_db": parity.get("sqnr_db") if int8 else None,
            # XNNPACK subgraphs: the graph leaves and re-enters the delegate between them
            "partitions": delegation["delegated_subgraphs"] if delegation else None}


def run(preset: str, threads: list[int], repeats: int, warmup: int, checkpoint: Path | None = None,
        int8_checkpoint_path: Path | None = None, modes: tuple[str, ...] = ("clip", "stream")) -> dict:
    """Export a model and time every form of each of `modes`, the clip model and the streaming step: eager fp32,
    ExecuTorch and ONNX in fp32 and int8, with each thread count, and int8's speed-up over fp32 per runtime;
    Core ML's size, ops and parity. The model is the preset with random weights (latency does not depend on
    them; its step is its causal variant's), or the trained model of `checkpoint` with its int8 form
    `int8_checkpoint_path` (the shipped pair: what a user exports first)."""
    from ..quantize import load_quantized

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
    step_model = model if streamable(cfg) else XViT(causal_variant(cfg)).eval()
    stream = "stream" in modes
    failed: list[dict] = []
    # Random weights quantize poorly (a deep random model's int8 form is 24-29 dB from its converted model in
    # every runtime alike), and their accuracy means nothing anyway: their int8 forms are timed against a
    # lower, recorded bar; a trained checkpoint keeps export's own.
    min_sqnr = INT8_MIN_SQNR_DB if checkpoint is not None else RANDOM_WEIGHTS_INT8_MIN_SQNR_DB
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quantized, step_quantized = {}, {}
        for scheme in ("static", "dynamic"):
            if scheme == "static" and int8_checkpoint_path is not None:
                quantized[scheme] = step_quantized[scheme] = load_quantized(int8_checkpoint_path, stream=stream)
                continue
            quantized[scheme] = int8_checkpoint(model, labels, pre, tmp / f"int8_{scheme}.pt",
                                                stream=stream and step_model is model, scheme=scheme)
            if stream:
                step_quantized[scheme] = quantized[scheme] if step_model is model else int8_checkpoint(
                    step_model, labels, pre, tmp / f"int8_{scheme}_step.pt", stream=True, scheme=scheme)
        forms = _forms(model, labels, pre, tmp, "clip", quantized, failed, min_sqnr) if "clip" in modes else []
        if stream:
            forms += _forms(step_model, labels, pre, tmp, "stream", step_quantized, failed, min_sqnr)
        coreml = _coreml(model, labels, pre, tmp, failed, quantized["static"] if int8_checkpoint_path else None)
        timings = _time(forms, threads, repeats, warmup)
        params_mb = sum(p.numel() * 4 for p in model.parameters()) / 1e6
        rows = [_row(f, n, timings[f.label, f.mode, n], params_mb) for f in forms for n in threads]
    return {"preset": cfg.name, "checkpoint": None if checkpoint is None else Path(checkpoint).name,
            "int8_checkpoint": None if int8_checkpoint_path is None else Path(int8_checkpoint_path).name,
            "step_model": None if not stream else "the model itself" if step_model is model
            else f"{cfg.name}, causal variant",
            "input_shape": input_shapes(cfg, "clip")[0], "rows": rows, "speedups": speedups(rows),
            "int8_min_sqnr_db": min_sqnr, "failed": failed, "coreml": coreml}


if __name__ == "__main__":  # the subprocess side of measure_in_subprocess
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
