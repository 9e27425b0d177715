"""Live statistics of a stream: capture rate, inference latency (median), frames dropped."""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass


class RateMeter:
    """Events per second over the last `window` events."""

    def __init__(self, window: int = 60) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.perf_counter() if now is None else now)

    @property
    def rate(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


@dataclass(frozen=True)
class StatsSnapshot:
    capture_fps: float  # frames the source delivered per second (dropped ones included)
    processed_fps: float  # frames the runtime took per second
    latency_ms: float  # median model latency over the recent window (0 before the first inference)
    captured: int
    processed: int
    dropped: int  # captured but never processed: a newer frame had arrived first

    def line(self) -> str:
        return (f"capture {self.capture_fps:.1f} fps, processed {self.processed_fps:.1f} fps, "
                f"latency {self.latency_ms:.1f} ms (median), dropped {self.dropped}/{self.captured}")


class LiveStats:
    """Inference latencies and processing rate, kept over a sliding window (fixed memory)."""

    def __init__(self, window: int = 100) -> None:
        self._latencies: deque[float] = deque(maxlen=window)
        self._processed = RateMeter(window)
        self.processed = 0

    def record(self, latency_ms: float | None) -> None:
        """One processed frame, with its model latency when the model ran on it."""
        self.processed += 1
        self._processed.tick()
        if latency_ms is not None:
            self._latencies.append(latency_ms)

    def snapshot(self, capture_fps: float, captured: int, dropped: int) -> StatsSnapshot:
        latency = statistics.median(self._latencies) if self._latencies else 0.0
        return StatsSnapshot(capture_fps, self._processed.rate, latency, captured, self.processed, dropped)
