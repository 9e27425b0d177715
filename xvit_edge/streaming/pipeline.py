"""The streaming loop: frames from a `FrameSource`, through a `Recognizer` and a `Smoother`, with live stats."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..data.video import _cv2
from .capture import Frame, FrameSource
from .recognizer import Prediction, Recognizer
from .smoothing import Decision, Smoother
from .stats import LiveStats, StatsSnapshot


@dataclass(frozen=True)
class StreamResult:
    frame: Frame
    prediction: Prediction | None  # None when the model did not run on this frame
    decision: Decision | None  # the latest smoothed decision; None until the first prediction
    stats: StatsSnapshot


def run_stream(recognizer: Recognizer, source: FrameSource, smoother: Smoother, stats: LiveStats | None = None,
               max_frames: int | None = None) -> Iterator[StreamResult]:
    """Yield one result per frame taken from the (started) source, until it ends or `max_frames`.

    Raises the source's CaptureError when the source was lost for good.
    """
    cv2 = _cv2()
    stats = stats or LiveStats()
    decision: Decision | None = None
    taken = 0
    while max_frames is None or taken < max_frames:
        frame = source.read()
        if frame is None:
            return
        taken += 1
        prediction = recognizer.push(cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB))
        if prediction is not None:
            decision = smoother.update(prediction.probs)
        stats.record(prediction.latency_ms if prediction is not None else None)
        yield StreamResult(frame, prediction, decision,
                           stats.snapshot(source.capture_fps, source.captured, source.dropped))
