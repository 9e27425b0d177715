"""Stand-ins for `cv2.VideoCapture`, to simulate cameras that disconnect and files that fail to decode."""

from __future__ import annotations

import threading

import numpy as np


def frame_with_index(i: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A BGR frame whose pixels all equal `i % 256` (cheap to tell frames apart)."""
    return np.full((*size, 3), i % 256, np.uint8)


class FakeCapture:
    """Delivers `script` in order: an int is a frame with that index, None a failed read; after the script,
    every read fails (a camera that disappeared, or the end of a file)."""

    def __init__(self, script: list[int | None], fps: float = 0.0) -> None:
        self.script, self.fps, self.pos, self.released = list(script), fps, 0, False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return not self.released

    def read(self):
        if self.pos >= len(self.script):
            return False, None
        item = self.script[self.pos]
        self.pos += 1
        return (False, None) if item is None else (True, frame_with_index(item))

    def get(self, prop: int) -> float:
        return {5: self.fps, 3: 64.0, 4: 48.0}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


class FakeOpener:
    """`open_capture` stand-in: each call opens the next capture of `captures`; an exception in the list is
    raised instead (a camera that cannot be reopened)."""

    def __init__(self, captures: list) -> None:
        self.captures, self.calls = list(captures), 0
        self._lock = threading.Lock()

    def __call__(self, source):
        with self._lock:
            item = self.captures[min(self.calls, len(self.captures) - 1)]
            self.calls += 1
        if isinstance(item, BaseException):
            raise item
        return item
