"""SIGTERM handled as Ctrl-C, so that a command stopped by `kill`, `timeout` or a service manager cleans up the
way an interrupted one does: temporary files removed, nothing half-written left under a final name."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Raise KeyboardInterrupt on SIGTERM from now on (main thread only: signals cannot be set elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
