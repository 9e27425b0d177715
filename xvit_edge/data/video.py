"""Decoding with OpenCV and frame sampling as the field does it.

Sampling returns frame indices; `read_frames` decodes sequentially and keeps only those frames (seeking is
unreliable across codecs, and a container's frame count can be wrong: what really decodes is what counts).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong with it."""


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError("decoding video needs OpenCV: pip install 'xvit-edge[video]'") from e
    return cv2


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # as the container reports it (may be wrong; see read_frames)
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike):
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: the file is empty")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{p}: OpenCV cannot open it as a video (corrupt, or an unsupported format)")
    return cap


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and size as the container reports them."""
    cv2 = _cv2()
    cap = _open(path)
    try:
        return VideoInfo(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def read_all(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Every decodable frame (up to `max_frames`), `(N, H, W, 3)` uint8 RGB."""
    cv2 = _cv2()
    cap = _open(path)
    frames = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated)")
    return np.stack(frames)


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """The frames at `indices` (any order, repeats allowed), `(len(indices), H, W, 3)` uint8 RGB.

    Decodes sequentially, grabbing frames that are not needed without converting them. If the file holds
    fewer frames than an index asks for (a truncated file, or a wrong frame count in the container), the
    indices are rescaled onto the frames that did decode and a warning is logged.
    """
    cv2 = _cv2()
    if not len(indices):
        raise ValueError("read_frames: no frame indices given")
    wanted = sorted(set(int(i) for i in indices))
    cap = _open(path)
    got: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        for idx in range(wanted[-1] + 1):
            if not cap.grab():
                break
            decoded = idx + 1
            if idx in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                got[idx] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if decoded == 0:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated)")
    if len(got) < len(wanted):  # ran out of frames: map the request onto what exists
        log.warning("%s: only %d frames decode (frame %d was asked for); resampling within them",
                    path, decoded, wanted[-1])
        scale = (decoded - 1) / max(wanted[-1], 1)
        return read_all(path, decoded)[[round(i * scale) for i in indices]]
    return np.stack([got[int(i)] for i in indices])


def count_frames(path: str | os.PathLike) -> int:
    """Frames that really decode (the container's count can be wrong or missing)."""
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated)")
    return n


def segment_indices(num_frames: int, t: int, *, train: bool, rng: np.random.Generator | None = None) -> list[int]:
    """TSN / Something-Something sampling: T equal segments, one frame each (random in training, the centre
    at test). A video shorter than T repeats frames, as TSN does."""
    _check(num_frames, t)
    edges = np.linspace(0, num_frames, t + 1)
    if train:
        rng = rng or np.random.default_rng()
        picks = edges[:-1] + rng.random(t) * (edges[1:] - edges[:-1])
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(picks.astype(int), num_frames - 1).tolist()


def uniform_indices(num_frames: int, t: int, stride: int, *, train: bool, rng: np.random.Generator | None = None,
                    start: int | None = None) -> list[int]:
    """Kinetics-style dense sampling: T frames `stride` apart from a random start in training, centred at test.
    When the video is shorter than T * stride the stride shrinks to fit; below T frames the last repeats."""
    _check(num_frames, t)
    stride = max(1, min(stride, (num_frames - 1) // max(t - 1, 1))) if t > 1 else 1
    span = (t - 1) * stride + 1
    room = max(num_frames - span, 0)
    if start is None:
        start = int((rng or np.random.default_rng()).integers(0, room + 1)) if train else room // 2
    return [min(start + i * stride, num_frames - 1) for i in range(t)]


def multiview_indices(num_frames: int, t: int, num_clips: int, sampling: str = "segment",
                      stride: int = 2) -> list[list[int]]:
    """Test-time temporal views: `num_clips` clips spread evenly over the video (averaged scores)."""
    if num_clips == 1:
        return [segment_indices(num_frames, t, train=False) if sampling == "segment"
                else uniform_indices(num_frames, t, stride, train=False)]
    if sampling == "segment":  # shift each segment's pick by a fraction of a segment
        seg = num_frames / t
        return [[min(int(s * seg + (c + 0.5) * seg / num_clips), num_frames - 1) for s in range(t)]
                for c in range(num_clips)]
    first = uniform_indices(num_frames, t, stride, train=False, start=0)
    room = max(num_frames - 1 - first[-1], 0)
    return [uniform_indices(num_frames, t, stride, train=False, start=round(c * room / (num_clips - 1)))
            for c in range(num_clips)]


def _check(num_frames: int, t: int) -> None:
    if num_frames < 1:
        raise VideoError("the video has no frames")
    if t < 1:
        raise ValueError(f"need at least one frame to sample, got T={t}")
