"""The label, confidence and speed overlay drawn onto each frame."""

from __future__ import annotations

import numpy as np

from xvit_edge.data.video import _cv2
from xvit_edge.streaming import NO_ACTION, Decision, StatsSnapshot

ACTION_COLOUR = (80, 220, 80)  # BGR
QUIET_COLOUR = (200, 200, 200)


def draw_overlay(bgr: np.ndarray, decision: Decision | None, stats: StatsSnapshot, warm_up: str = "") -> None:
    """Draw onto `bgr` in place: the label and its confidence, then fps, latency and dropped frames."""
    cv2 = _cv2()
    h = bgr.shape[0]
    scale = max(h / 720, 0.35)  # text that reads the same on a 240p and a 4K frame
    thick = max(1, round(2 * scale))
    if decision is None:
        title, colour = warm_up or "warming up", QUIET_COLOUR
    elif decision.label == NO_ACTION:
        title, colour = f"{NO_ACTION} ({decision.confidence:.0%})", QUIET_COLOUR
    else:
        title, colour = f"{decision.label} {decision.confidence:.0%}", ACTION_COLOUR
    detail = (f"{stats.processed_fps:.1f} fps (capture {stats.capture_fps:.1f})  "
              f"latency {stats.latency_ms:.1f} ms  dropped {stats.dropped}")
    lines = [(title, 1.0 * scale, colour), (detail, 0.6 * scale, QUIET_COLOUR)]
    pad = round(10 * scale)
    sizes = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s, thick)[0] for text, s, _ in lines]
    width = max(w for w, _ in sizes) + 2 * pad
    height = sum(hh for _, hh in sizes) + pad * (len(lines) + 1)
    box = bgr[:height, :width]
    box[:] = (box * 0.4).astype(bgr.dtype)  # darken behind the text so it reads on any background
    y = pad
    for (text, s, c), (_, hh) in zip(lines, sizes):
        y += hh
        cv2.putText(bgr, text, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, s, c, thick, cv2.LINE_AA)
        y += pad
