"""Decoding with OpenCV, and frame sampling as the field does it.

The sampling functions return frame indices; `read_frames` decodes sequentially and keeps only those frames.
Seeking (`CAP_PROP_POS_FRAMES`) is never used: with inter-frame codecs some backends land on the nearest
keyframe, so the frame returned is not always the frame asked for. A container's frame count can also be
wrong (a truncated download, a broken index): what really decodes is what counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import opencv_path, printable

log = logging.getLogger(__name__)


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and what is wrong with it."""


def _cv2():
    """OpenCV, imported only when video is touched (it is an optional extra)."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("decoding video needs OpenCV: pip install 'xvit-edge[video]'") from e
    return cv2


@dataclass(frozen=True)
class VideoInfo:
    """What the container says; `frames` is 0 when it does not say, and may be wrong (see `read_frames`)."""

    frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike):
    """An opened `cv2.VideoCapture`, or a VideoError saying why the file cannot be one."""
    cv2 = _cv2()
    p = Path(path)
    name = printable(p)
    if not p.exists():
        raise VideoError(f"{name}: no such file")
    if not p.is_file():
        raise VideoError(f"{name}: not a file")
    if not os.access(p, os.R_OK):
        raise VideoError(f"{name}: cannot be read (permission denied)")
    if p.stat().st_size == 0:
        raise VideoError(f"{name}: the file is empty (0 bytes)")
    # FFmpeg explicitly: CAP_ANY may hand a name containing '%' to the image-sequence reader.
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    try:
        with opencv_path(p) as plain:  # a name that is not UTF-8 would crash OpenCV
            cap = cv2.VideoCapture(plain, backend)
    except OSError as e:
        raise VideoError(f"{name}: its name is not valid UTF-8 and no plain-named link to it can be made "
                         f"({e.strerror}); rename the file") from e
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{name}: not a video OpenCV can open (corrupt, truncated before its index, "
                         "or an unsupported format)")
    return cap


def _claimed_frames(cap) -> int:
    cv2 = _cv2()
    return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)  # -1 or 0 when the container does not say


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and size as the container reports them (nothing is decoded)."""
    cv2 = _cv2()
    cap = _open(path)
    try:
        return VideoInfo(_claimed_frames(cap), float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def count_frames(path: str | os.PathLike) -> int:
    """Frames that really decode (the container's count can be wrong or missing). Decodes the whole file."""
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{printable(path)}: zero frames decode (corrupt or truncated)")
    return n


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
        raise VideoError(f"{printable(path)}: zero frames decode (corrupt or truncated)")
    return _stack(path, frames)


def _stack(path: str | os.PathLike, frames: list[np.ndarray]) -> np.ndarray:
    if len({f.shape for f in frames}) > 1:
        raise VideoError(f"{printable(path)}: the frame size changes within the video "
                         f"({sorted({f.shape for f in frames})})")
    return np.stack(frames)


def _decode(path: str | os.PathLike, wanted: set[int]) -> tuple[dict[int, np.ndarray], int, int, bool]:
    """One sequential pass up to the largest wanted index: grab() every frame (decode, no conversion),
    retrieve() only the wanted ones. Returns the frames, how many decoded, the container's count, and
    whether the file ran out first (then `decoded` is the true length)."""
    cv2 = _cv2()
    cap = _open(path)
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        claimed = _claimed_frames(cap)
        while decoded <= last:
            if not cap.grab():
                break
            if decoded in wanted:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:  # grabbed but undecodable: treat as the end of the usable stream
                    break
                got[decoded] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            decoded += 1
    finally:
        cap.release()
    return got, decoded, claimed, decoded <= last


def read_frames(path: str | os.PathLike, indices: Sequence[int], *, min_frames: int = 1) -> np.ndarray:
    """The frames at `indices` (any order, repeats allowed), `(len(indices), H, W, 3)` uint8 RGB.

    Decodes sequentially (no seeking). When fewer frames decode than an index asks for (a truncated file,
    or a container that claims more frames than it holds), the indices are rescaled onto the frames that
    did decode, as if they had been sampled from the true length, and a warning is logged. A VideoError is
    raised when nothing decodes, or when fewer than `min_frames` frames decode (a clip too short to use).
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError(f"{printable(path)}: read_frames got no frame indices")
    if min(idx) < 0:
        raise ValueError(f"{printable(path)}: negative frame index {min(idx)}")
    got, decoded, claimed, exhausted = _decode(path, set(idx))
    if decoded == 0:
        said = f"; the container claims {claimed}" if claimed else ""
        raise VideoError(f"{printable(path)}: zero frames decode{said} (corrupt or truncated)")
    if not exhausted:
        return _stack(path, [got[i] for i in idx])
    if decoded < min_frames:
        if claimed > decoded:
            raise VideoError(f"{printable(path)}: truncated: the container claims {claimed} frames but only "
                             f"{decoded} decode, fewer than the {min_frames} needed")
        raise VideoError(f"{printable(path)}: {decoded} frames, fewer than the {min_frames} needed")
    # Ran out: map the request from the length the caller assumed onto the length that decodes.
    assumed = max(claimed, max(idx) + 1)
    remapped = [min(i * decoded // assumed, decoded - 1) for i in idx]
    if claimed > decoded:
        log.warning("%s: truncated or wrong frame count: the container claims %d frames but only %d decode; "
                    "resampling within them", printable(path), claimed, decoded)
    else:
        log.warning("%s: only %d frames decode but frame %d was asked for; resampling within them",
                    printable(path), decoded, max(idx))
    got, _, _, exhausted = _decode(path, set(remapped))
    if exhausted:  # decoded fewer frames than on the first pass: the decoder is not deterministic here
        raise VideoError(f"{printable(path)}: decodes {decoded} frames on one pass and fewer on the next "
                         "(corrupt)")
    return _stack(path, [got[i] for i in remapped])


# ------------------------------------------------------------------------------------------------- sampling


def _check(num_frames: int, t: int) -> None:
    if num_frames < 1:
        raise VideoError(f"cannot sample {t} frames from a video with {num_frames} frames")
    if t < 1:
        raise ValueError(f"need at least one frame to sample, got T={t}")


def segment_indices(num_frames: int, t: int, *, train: bool, rng: np.random.Generator | None = None) -> list[int]:
    """TSN / Something-Something sampling: T equal segments, one frame from each (a random one in training,
    the centre at test). A video shorter than T repeats frames, in order, as TSN does."""
    _check(num_frames, t)
    edges = np.linspace(0, num_frames, t + 1)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        picks = edges[:-1] + rng.random(t) * (edges[1:] - edges[:-1])
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(picks.astype(int), num_frames - 1).tolist()


def uniform_indices(num_frames: int, t: int, stride: int, *, train: bool, rng: np.random.Generator | None = None,
                    start: int | None = None) -> list[int]:
    """Kinetics-style dense clip: T frames `stride` apart, from a random start in training, centred at test
    (or from `start`).

    A video shorter than the clip's span `(T - 1) * stride + 1` gets the largest stride that fits (the clip
    keeps covering the video rather than a part of it); below T frames the stride is 1 and the last frame
    repeats to fill the clip.
    """
    _check(num_frames, t)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if t > 1:
        stride = max(1, min(stride, (num_frames - 1) // (t - 1)))
    span = (t - 1) * stride + 1
    room = max(num_frames - span, 0)
    if start is None:
        start = int((rng if rng is not None else np.random.default_rng()).integers(0, room + 1)) if train \
            else room // 2
    return [min(start + i * stride, num_frames - 1) for i in range(t)]


def multiview_indices(num_frames: int, t: int, num_clips: int, sampling: str = "segment",
                      stride: int = 2) -> list[list[int]]:
    """Test-time temporal views: `num_clips` clips spread evenly over the video (their scores are averaged).

    `segment`: clip c takes the point (c + 0.5) / num_clips of the way through every segment (one clip: the
    centres). `uniform`: the clips' starts are spread evenly from the first frame to the last possible start
    (one clip: centred).
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if sampling == "segment":
        if num_clips == 1:  # exactly the single-view test sampling
            return [segment_indices(num_frames, t, train=False)]
        _check(num_frames, t)
        seg = num_frames / t
        return [[min(int(s * seg + (c + 0.5) * seg / num_clips), num_frames - 1) for s in range(t)]
                for c in range(num_clips)]
    if sampling != "uniform":
        raise ValueError(f"sampling must be 'segment' or 'uniform', got {sampling!r}")
    if num_clips == 1:
        return [uniform_indices(num_frames, t, stride, train=False)]
    first = uniform_indices(num_frames, t, stride, train=False, start=0)
    room = max(num_frames - 1 - first[-1], 0)
    return [uniform_indices(num_frames, t, stride, train=False, start=round(c * room / (num_clips - 1)))
            for c in range(num_clips)]
