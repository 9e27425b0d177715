"""Temporal smoothing of class scores, and a confidence threshold below which the answer is "no action".

Per-frame scores flicker between neighbouring classes; a label shown live should not. Two smoothers:
- `ema`: an exponential moving average of the probabilities, then the threshold on the smoothed winner;
- `vote`: the threshold on each prediction first, then the most frequent answer among the last `window`
  (so "no action" can win the vote too; a tie goes to the answer given most recently).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

NO_ACTION = "no action"
METHODS = ("ema", "vote", "none")


@dataclass(frozen=True)
class Decision:
    """What to show: a label (or `NO_ACTION`, index -1) and its confidence in [0, 1]."""

    label: str
    index: int
    confidence: float


class EMA:
    """`s = alpha * p + (1 - alpha) * s`, starting from the first probabilities seen."""

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: np.ndarray | None = None

    def update(self, probs: np.ndarray) -> np.ndarray:
        if self._state is None:
            self._state = np.array(probs, dtype=np.float64)
        else:
            self._state *= 1 - self.alpha
            self._state += self.alpha * probs
        return self._state

    def reset(self) -> None:
        self._state = None


class MajorityVote:
    """The most frequent of the last `window` answers (class index, -1 for no action) with its mean
    confidence; ties go to the most recent answer."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"vote window must be >= 1, got {window}")
        self._votes: deque[tuple[int, float]] = deque(maxlen=window)

    def update(self, index: int, confidence: float) -> tuple[int, float]:
        self._votes.append((index, confidence))
        counts: dict[int, int] = {}
        for i, _ in self._votes:
            counts[i] = counts.get(i, 0) + 1
        best = max(counts.values())
        winner = next(i for i, _ in reversed(self._votes) if counts[i] == best)
        return winner, float(np.mean([c for i, c in self._votes if i == winner]))

    def reset(self) -> None:
        self._votes.clear()


class Smoother:
    """Probabilities in, a `Decision` out: smoothing (`ema`, `vote` or `none`) and the `threshold`."""

    def __init__(self, labels: list[str], method: str = "ema", threshold: float = 0.5, alpha: float = 0.3,
                 window: int = 5) -> None:
        if method not in METHODS:
            raise ValueError(f"smoothing must be one of {', '.join(METHODS)}, got {method!r}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.labels, self.method, self.threshold = list(labels), method, threshold
        self._ema = EMA(alpha) if method == "ema" else None
        self._vote = MajorityVote(window) if method == "vote" else None

    def _decide(self, probs: np.ndarray) -> tuple[int, float]:
        i = int(np.argmax(probs))
        return (i if probs[i] >= self.threshold else -1), float(probs[i])

    def update(self, probs: np.ndarray) -> Decision:
        probs = np.asarray(probs, dtype=np.float64)
        if self._ema is not None:
            index, confidence = self._decide(self._ema.update(probs))
        elif self._vote is not None:
            index, confidence = self._vote.update(*self._decide(probs))
        else:
            index, confidence = self._decide(probs)
        return Decision(self.labels[index] if index >= 0 else NO_ACTION, index, confidence)

    def reset(self) -> None:
        for s in (self._ema, self._vote):
            if s is not None:
                s.reset()
