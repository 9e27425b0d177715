"""The streaming runtime: frames from a camera, file or URL -> rolling clip or incremental state -> smoothed
labels, for any exported model (eager torch, ExecuTorch, onnxruntime). The demo apps live in `apps/`.

Heavy dependencies (OpenCV, ExecuTorch, onnxruntime) are imported only by the parts that use them.
"""

from .backends import LoadedModel, ModelLoadError, default_threads, load_model
from .buffer import FrameBuffer
from .capture import CaptureError, Frame, FrameSource, parse_source
from .pipeline import StreamResult, run_stream
from .recognizer import MODES, Prediction, Recognizer
from .smoothing import EMA, NO_ACTION, Decision, MajorityVote, Smoother
from .stats import LiveStats, RateMeter, StatsSnapshot

__all__ = ["CaptureError", "Decision", "EMA", "Frame", "FrameBuffer", "FrameSource", "LiveStats", "LoadedModel",
           "MODES", "MajorityVote", "ModelLoadError", "NO_ACTION", "Prediction", "RateMeter", "Recognizer",
           "Smoother", "StatsSnapshot", "StreamResult", "default_threads", "load_model", "parse_source", "run_stream"]
