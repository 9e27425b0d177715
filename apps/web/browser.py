"""Driving the page in a headless Chromium, for the tests (tests/test_web.py) and the benchmark
(xvit_edge/bench/web.py): the system's Chromium and chromedriver (apt's, installed by scripts/install.sh),
driven by selenium with both paths given, so that nothing looks for or downloads a browser of its own; and a
fake camera that plays a clip written here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Flags that work as root on a machine without a display or GPU, with no traffic of the browser's own.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=900,700")
# What the page exposes in `window.xvit` (see static/js/main.js), with the overlay's text.
STATE_SCRIPT = (
    "return {state: xvit.state, error: xvit.error, note: xvit.note, stats: xvit.stats, "
    "label: document.getElementById('label').textContent, stats_text: document.getElementById('stats').textContent, "
    "message: document.getElementById('message').hidden ? null : document.getElementById('message').textContent, "
    "isolated: crossOriginIsolated}")


def missing() -> str | None:
    """What is missing to drive the page here, or None."""
    from .server import WebError, check_runtime

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return "chromium and chromium-driver are not installed (scripts/install.sh installs them)"
    try:
        check_runtime()
    except WebError as e:
        return str(e)
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -c constraints.txt -e '.[dev]'"
    return None


def write_y4m(path: Path, frames: np.ndarray, fps: int) -> Path:
    """RGB frames `(T, H, W, 3)` as an uncompressed 4:2:0 YUV4MPEG2 file, which Chromium's fake camera plays
    in a loop (--use-file-for-fake-video-capture)."""
    import cv2

    t, h, w = frames.shape[:3]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def rendered_frames(count: int, height: int, width: int, seed: int = 3) -> np.ndarray:
    """`count` frames of the synthetic benchmark's clips (moving textured shapes, one class after another),
    `(count, height, width, 3)` uint8 RGB: something for the fake camera to film."""
    from xvit_edge.data.synthetic import CLASSES, clip_rng, generate_clip

    size = max(height, width)
    clips: list[np.ndarray] = []
    while sum(len(c) for c in clips) < count:
        name = CLASSES[len(clips) % len(CLASSES)]
        clips.append(generate_clip(name, clip_rng(seed, "val", name, len(clips)), 16, size))
    frames = np.concatenate(clips)[:count]
    top, left = (size - height) // 2, (size - width) // 2
    return np.ascontiguousarray(frames[:, top: top + height, left: left + width])


def video_frames(path: Path, count: int, height: int, width: int) -> np.ndarray:
    """The first `count` frames of a video file, centre-cropped to the aspect of `width` x `height` and resized
    to it, `(count, height, width, 3)` uint8 RGB: a real clip for the fake camera to film."""
    import cv2

    from xvit_edge.files import opencv_path

    frames = []
    with opencv_path(path) as name:
        capture = cv2.VideoCapture(name)
        try:
            while len(frames) < count:
                ok, bgr = capture.read()
                if not ok:
                    break
                h, w = bgr.shape[:2]
                crop_w = min(w, round(h * width / height))
                crop_h = min(h, round(crop_w * height / width))
                top, left = (h - crop_h) // 2, (w - crop_w) // 2
                crop = bgr[top: top + crop_h, left: left + crop_w]
                frames.append(cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA),
                                           cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
    if len(frames) < count:
        raise ValueError(f"{path}: {len(frames)} frames decoded, {count} needed")
    return np.stack(frames)


def chromium(profile: Path, *flags: str, camera: Path | None = None):
    """A headless Chromium (selenium WebDriver) with a fresh profile in `profile`; with `camera`, a fake camera
    that plays that .y4m and the permission granted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    fake = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}") if camera else ()
    for flag in (*FLAGS, f"--user-data-dir={profile}", *fake, *flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def page_state(driver) -> dict[str, Any]:
    """The page's state, figures and visible texts."""
    return driver.execute_script(STATE_SCRIPT)


def wait_for(driver, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0, every: float = 0.25,
             stop_on_error: bool = True) -> dict[str, Any]:
    """Poll the page until `done(state)`, an error on it (unless not `stop_on_error`: the page was in error and
    is being given another source), or `timeout` seconds; returns the last state."""
    deadline = time.monotonic() + timeout
    state = page_state(driver)
    while not done(state) and time.monotonic() < deadline and not (stop_on_error and state["state"] == "error"):
        time.sleep(every)
        state = page_state(driver)
    return state
