"""The browser demo's speed: model latency per frame and fps as the page (apps/web) measures and shows them,
in headless Chromium with onnxruntime-web on WASM, 1 and 2 threads, for the shipped checkpoint's stream step
and the mobile preset's (its causal variant, random weights: latency does not depend on them), fp32.

Each (model, threads) pair gets a fresh browser on the page (`?ep=wasm&threads=N`), filming a fake 640x480
camera that plays rendered synthetic clips at `CAMERA_FPS`. After a warm-up, the page's own figures are read
over a window: the median and p90 of its per-frame model latency (`session.run`, what the overlay shows; the
window's last 100 frames at most), its preprocessing time, and the frames it processed per second. The page
processes the newest frame whenever one is shown, so fps is at most the camera's rate.

Needs what the demo's tests need (Chromium, chromedriver, onnxruntime-web from scripts/install.sh, selenium)
and the repository's apps/ folder on the path (run from the repository root):

    python -m xvit_edge.bench.web [--preset xvit_edge_tiny] [--threads 1 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cli_types import HelpFormatter, positive_float, thread_count
from ..config import PRESETS, Preprocessing, causal_variant, get_config
from ..files import OVERWRITE_HELP, OutputError, check_output, printable, refuse_existing, write_text_atomic

log = logging.getLogger(__name__)

CAMERA = (640, 480)  # width, height: a common webcam mode
CAMERA_FPS = 30


class Unavailable(RuntimeError):
    """The browser, onnxruntime-web or the demo's code is not there; the message says what to install."""


def _apps_web():
    try:
        from apps.web import browser, server
    except ImportError as e:
        raise Unavailable("the browser demo (apps/web) is not importable: run from the repository root") from e
    problem = browser.missing()
    if problem:
        raise Unavailable(problem)
    return browser, server


def _models(preset: str | None, folder: Path) -> dict[str, Path]:
    """Stream-mode fp32 ONNX exports (verified by export): the shipped checkpoint's step, and `preset`'s
    causal variant with random weights (unless None)."""
    from ..assets import default_checkpoint
    from ..export import export
    from ..model import XViT
    from ..model.weights import load_checkpoint

    out = {}
    try:
        model, meta = load_checkpoint(default_checkpoint())
        out["default"] = export(model, meta.labels, meta.preprocessing, "onnx", folder / "default", mode="stream",
                                samples=1).path
    except FileNotFoundError as e:
        log.warning("web: the shipped checkpoint is skipped: %s", e)
    if preset is None:
        return out
    torch.manual_seed(0)
    cfg = causal_variant(get_config(preset))
    labels = [f"class_{i}" for i in range(cfg.num_classes)]
    out[preset] = export(XViT(cfg).eval(), labels, Preprocessing.for_size(cfg.img_size), "onnx", folder / preset,
                         mode="stream", samples=1).path
    return out


def measure(url: str, threads: int, camera: Path, profile: Path, warmup_s: float, seconds: float) -> dict[str, Any]:
    """The page at `url` on WASM with `threads` threads, filming `camera`: its figures over `seconds` after
    `warmup_s` of running."""
    browser, _ = _apps_web()
    driver = browser.chromium(profile, camera=camera)
    try:
        driver.get(f"{url}?ep=wasm&threads={threads}")
        state = browser.wait_for(driver, lambda s: bool(s["stats"]), timeout=120)
        if state["state"] == "error" or not state["stats"]:
            raise RuntimeError(f"the page did not run: {state['error'] or state['state']}")
        time.sleep(warmup_s)
        start, t0 = browser.page_state(driver)["stats"]["processed"], time.monotonic()
        time.sleep(seconds)
        # The page keeps its last 100 latencies; the window's are the newest `processed` - `start` of them.
        end = driver.execute_script("const s = xvit.app.stats; return {processed: s.processed, model: s.model, "
                                    "prep: s.prep, fps: s.fps, threads: xvit.stats.threads, "
                                    "backend: xvit.stats.backend, isolated: crossOriginIsolated}")
        elapsed = time.monotonic() - t0
    finally:
        driver.quit()
    frames = end["processed"] - start
    if frames < 1:
        raise RuntimeError(f"the page processed no frame in {elapsed:.0f} s")
    keep = min(frames, len(end["model"]))  # the window's latencies, up to the 100 the page keeps
    model_ms, prep_ms = end["model"][-keep:], end["prep"][-keep:]
    return {"threads": end["threads"], "backend": end["backend"], "cross_origin_isolated": end["isolated"],
            "frames": frames, "seconds": elapsed, "fps": frames / elapsed, "page_fps": end["fps"],
            "latency_median_ms": statistics.median(model_ms), "latency_p90_ms": float(np.percentile(model_ms, 90)),
            "preprocess_median_ms": statistics.median(prep_ms)}


def run(preset: str | None = "xvit_edge_tiny", threads: list[int] | tuple[int, ...] = (1, 2), seconds: float = 10.0,
        warmup_s: float = 3.0) -> dict[str, Any]:
    """Export the models (the shipped checkpoint's step, and `preset`'s unless None), serve each with
    apps.web's server and measure the page on WASM with each thread count; raises `Unavailable` when the
    browser or onnxruntime-web is not installed."""
    browser, server = _apps_web()
    version = server.check_runtime()
    rows = []
    with tempfile.TemporaryDirectory(prefix="xvit_web_bench_") as tmp:
        folder = Path(tmp)
        w, h = CAMERA
        camera = browser.write_y4m(folder / "camera.y4m", browser.rendered_frames(96, h, w), CAMERA_FPS)
        for name, path in _models(preset, folder).items():
            served = server.check_model(path)
            httpd = server.make_server(served, port=0)
            httpd.start()
            try:
                for n in threads:
                    row = measure(f"http://127.0.0.1:{httpd.port}/", n, camera, folder / f"profile_{name}_{n}",
                                  warmup_s, seconds)
                    row.update(model=name, config=served.meta["config"]["name"],
                               img_size=served.meta["config"]["img_size"], precision=served.meta["precision"])
                    log.info("web: %s, %d thread(s): %.1f ms model, %.1f fps", name, n, row["latency_median_ms"],
                             row["fps"])
                    rows.append(row)
            finally:
                httpd.shutdown()
                httpd.server_close()
    return {"rows": rows, "onnxruntime_web": version, "camera": {"size": list(CAMERA), "fps": CAMERA_FPS},
            "settings": {"warmup_s": warmup_s, "seconds": seconds, "ep": "wasm"},
            "browser": "headless Chromium (system package), --disable-gpu"}


def table(results: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    lines = ["| model | img | threads | model latency median (p90) | preprocessing | fps |",
             "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['model']} ({r['config']}, {r['precision']}) | {r['img_size']} | {r['threads']} | "
                     f"{r['latency_median_ms']:.1f} ms ({r['latency_p90_ms']:.1f}) | "
                     f"{r['preprocess_median_ms']:.1f} ms | {r['fps']:.1f} |")
    cam = results["camera"]
    return "\n".join(lines) + (f"\n\nonnxruntime-web {results['onnxruntime_web']}, WASM, {results['browser']}; fake "
                               f"camera {cam['size'][0]}x{cam['size'][1]} at {cam['fps']} fps (fps cannot exceed it).")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.bench.web", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--preset", default="xvit_edge_tiny", choices=sorted(PRESETS),
                   help="the preset measured beside the shipped checkpoint (causal variant, random weights)")
    p.add_argument("--threads", type=thread_count, nargs="+", default=[1, 2], help="WASM thread counts")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measuring window per run")
    p.add_argument("--warmup", type=positive_float, default=3.0, help="seconds of running before the window")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our progress lines; the export toolchains' own INFO chatter stays off.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        if args.json:  # checked first: a measurement is not thrown away for want of a place to write it
            check_output(args.json, "--json", create_folders=True)
            refuse_existing({"--json": args.json}, args.overwrite)
        results = run(args.preset, args.threads, args.seconds, args.warmup)
        if args.json:
            write_text_atomic(args.json, json.dumps(results, indent=2))
    except (Unavailable, OSError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        print(f"wrote {printable(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
