"""Capture decoupled from inference: a thread reads frames from a camera, a video file or a stream URL.

Two ways to hand frames over:
- newest frame (cameras, URLs; the default): the reader always gets the most recent frame; a frame that a
  newer one replaced before it was read is dropped and counted. Latency stays bounded when inference is
  slower than the camera. A file read this way is paced at its own frame rate, like a camera.
- every frame (`every_frame=True`, for files): a small bounded queue; the capture thread waits for the
  reader, nothing is dropped, and annotating a file gives the same result on every run.

Failures: a live source that stops delivering (camera unplugged, stream lost) is reported, reopened up to
`retries` times `retry_delay` seconds apart, then the stream ends with a `CaptureError` saying so. A file
frame that fails to decode is reported and skipped (up to `retries` in a row); the end of a file is a normal
end, with a warning when fewer frames decoded than the container claims.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.video import VideoError, _cv2, _open
from ..files import is_plain, printable
from .stats import RateMeter

log = logging.getLogger(__name__)

Source = int | str
# cv2.CAP_PROP_* values, so that a stand-in capture object needs no OpenCV.
_WIDTH, _HEIGHT, _FPS, _COUNT = 3, 4, 5, 7


class CaptureError(RuntimeError):
    """A source that cannot be opened, or that was lost for good; the message says which and why."""


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source: every frame read counts, dropped ones included
    bgr: np.ndarray  # (H, W, 3) uint8, as OpenCV decodes it
    time: float  # time.perf_counter() when it was read


def parse_source(source: Source) -> Source:
    """`"0"` -> camera 0; anything else is a file path or a URL."""
    if isinstance(source, int):
        return source
    text = str(source).strip()
    return int(text) if text.isdigit() else text


def is_live(source: Source) -> bool:
    """Cameras and URLs can drop out and come back; files end."""
    return isinstance(source, int) or "://" in source


def describe(source: Source) -> str:
    """The source as messages name it (a file name that is not UTF-8 with its odd bytes as \\xNN)."""
    return f"camera {source}" if isinstance(source, int) else printable(source)


def open_capture(source: Source) -> Any:
    """An opened `cv2.VideoCapture` for a camera index, a URL or a file, or a CaptureError saying why not."""
    if isinstance(source, str) and "://" not in source:
        try:
            return _open(source)  # the decoding module's checks: missing, empty, unreadable, not a video
        except VideoError as e:
            raise CaptureError(str(e)) from e
    if isinstance(source, str) and not is_plain(source):  # OpenCV would crash on it
        raise CaptureError(f"{describe(source)}: a stream URL must be valid UTF-8 text")
    cv2 = _cv2()
    # OpenCV logs its own "[ WARN ] can't open camera by index" lines when a camera is missing; the
    # CaptureError below says it once, with what to do.
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(source) if isinstance(source, int) else cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if not cap.isOpened():
        cap.release()
        why = "no such camera, or it is in use" if isinstance(source, int) else "unreachable or not a video stream"
        raise CaptureError(f"{describe(source)}: cannot be opened ({why})")
    return cap


class FrameSource:
    """Frames from `source` (camera index, file or URL) read on a thread; `read()` hands them over.

    Use as a context manager, or call `start()` and `stop()`. `opener` replaces `open_capture` (a stand-in
    capture object in tests: `read() -> (ok, bgr)`, `get(prop)`, `isOpened()`, `release()`).
    """

    def __init__(self, source: Source, *, every_frame: bool = False, retries: int = 3, retry_delay: float = 1.0,
                 realtime: bool | None = None, queue_size: int = 4,
                 opener: Callable[[Source], Any] | None = None) -> None:
        self.source = parse_source(source)
        self.name = describe(self.source)
        self.live = is_live(self.source)
        self.every_frame = every_frame
        self.retries, self.retry_delay = max(0, retries), retry_delay
        # A file read newest-frame-first is paced at its frame rate, as a camera would deliver it.
        self.realtime = (not self.live and not every_frame) if realtime is None else realtime
        self.queue_size = max(1, queue_size)
        self._opener = opener
        self._cap: Any = None
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        self.error: CaptureError | None = None
        self.end_message = ""  # why the stream ended, once it has
        self.captured = self.dropped = self.decode_failures = 0
        self._meter = RateMeter()
        self.fps = 0.0
        self.size = (0, 0)  # (width, height) the source reports
        self.claimed_frames = 0

    # ------------------------------------------------------------------------------------------- life cycle

    def _open(self) -> Any:
        return (self._opener or open_capture)(self.source)

    def start(self) -> "FrameSource":
        """Open the source (a CaptureError here means it cannot be opened at all) and start reading."""
        self._cap = self._open()
        self.fps = float(self._cap.get(_FPS) or 0.0)
        self.size = (int(self._cap.get(_WIDTH) or 0), int(self._cap.get(_HEIGHT) or 0))
        self.claimed_frames = max(int(self._cap.get(_COUNT) or 0), 0) if not self.live else 0
        self._thread = threading.Thread(target=self._loop, name=f"capture {self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "FrameSource":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------------- reading

    def read(self) -> Frame | None:
        """The next frame (newest-frame mode: the most recent one); None once the stream has ended. Raises
        the CaptureError when it ended because the source was lost."""
        with self._cond:
            while not self._frames and not self._done and not self._stop.is_set():
                self._cond.wait(0.1)
            if self._frames:
                frame = self._frames.popleft()
                self._cond.notify_all()  # room in the queue for the capture thread
                return frame
        if self.error is not None:
            raise self.error
        return None

    @property
    def capture_fps(self) -> float:
        return self._meter.rate

    # -------------------------------------------------------------------------------------- capture thread

    def _deliver(self, frame: Frame) -> None:
        with self._cond:
            if self.every_frame:
                while len(self._frames) >= self.queue_size and not self._stop.is_set():
                    self._cond.wait(0.1)
            elif self._frames:  # the reader has not taken the previous frame: it is stale now
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def _finish(self, message: str, error: CaptureError | None = None) -> None:
        with self._cond:
            self.end_message, self.error, self._done = message, error, True
            self._cond.notify_all()

    def _reconnect(self, attempt: int) -> bool:
        log.warning("%s: no frame (disconnected or stream lost); reconnecting, attempt %d of %d",
                    self.name, attempt, self.retries)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._stop.wait(self.retry_delay):
            return False
        try:
            self._cap = self._open()
            return True
        except CaptureError as e:
            log.warning("%s", e)
            return False

    def _loop(self) -> None:
        failures = 0
        due = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, bgr = self._cap.read() if self._cap is not None else (False, None)
                if ok and bgr is not None:
                    if failures and not self.live:
                        log.warning("%s: %d frame(s) failed to decode after frame %d; skipped", self.name,
                                    failures, self.captured - 1)
                    failures = 0
                    frame = Frame(self.captured, bgr, time.perf_counter())
                    self.captured += 1
                    self._meter.tick(frame.time)
                    self._deliver(frame)
                    if self.realtime and self.fps > 0:
                        due = max(due + 1 / self.fps, frame.time - 1.0)  # never race to catch up a long stall
                        self._stop.wait(max(0.0, due - time.perf_counter()))
                    continue
                failures += 1
                if self.live:
                    if failures > self.retries:
                        self._finish("", CaptureError(
                            f"{self.name}: lost: no frame after {self.retries} reconnection attempt"
                            f"{'s' if self.retries != 1 else ''}; stopping"))
                        return
                    self._reconnect(failures)
                    continue
                if self.captured == 0:
                    self._finish("", CaptureError(f"{self.name}: no frame decodes (corrupt or unsupported video)"))
                    return
                if failures <= self.retries:  # the decoder may get past a damaged frame
                    self.decode_failures += 1
                    continue
                self.decode_failures -= failures - 1  # the last failures were the end of the file, not damage
                self._finish(self._end_of_file())
                return
            self._finish("")  # stopped by the reader
        except Exception as e:  # noqa: BLE001 - a backend error must end the stream, not kill it silently
            self._finish("", CaptureError(f"{self.name}: capture failed: {e}"))

    def _end_of_file(self) -> str:
        if self.claimed_frames > self.captured:
            msg = (f"{self.name}: stopped after {self.captured} of the {self.claimed_frames} frames the container "
                   "claims: the rest does not decode (truncated or corrupt)")
            log.warning("%s", msg)
            return msg
        return f"{self.name}: end of file after {self.captured} frames"
