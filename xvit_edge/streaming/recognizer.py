"""`Recognizer`: RGB frames in, class probabilities out, for any model form, in clip or incremental mode.

- clip mode: a ring buffer keeps the last T preprocessed frames; the whole-clip model runs on them every
  `stride` frames (once the buffer is full);
- incremental mode (a stream artifact, or a causal checkpoint): each new frame is encoded once and the
  state (the borrowed key/value channels of the last two frames, the last T class tokens) is carried;
  logits every frame.

Both report once T frames have been seen: after exactly T frames from a reset the two modes agree (the
incremental step's zero state plays the part of the clip's zero padding). Preprocessing comes from the model's
own metadata and is the training code's `preprocess_frame`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.transforms import preprocess_frame
from ..model.streaming import StreamState
from .backends import LoadedModel, load_model
from .buffer import FrameBuffer

log = logging.getLogger(__name__)

MODES = ("clip", "incremental")
# Which runner each mode uses (see backends): the whole-clip model, or the incremental step.
_RUNNER = {"clip": "clip", "incremental": "stream"}


@dataclass(frozen=True)
class Prediction:
    frame: int  # frames pushed since the last reset when this was computed (T for the first prediction)
    logits: torch.Tensor  # (num_classes,)
    probs: np.ndarray  # (num_classes,) softmax of the logits
    latency_ms: float  # the model's run alone (preprocessing excluded)


class Recognizer:
    """Feed it frames with `push(rgb)`; it returns a `Prediction` when the model ran, else None."""

    def __init__(self, model: LoadedModel, mode: str | None = None, stride: int = 1) -> None:
        available = [m for m in MODES if _RUNNER[m] in model.runners]
        mode = mode or ("incremental" if "incremental" in available else "clip")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode not in available:
            raise ValueError(self._unavailable(model, mode))
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if stride > 1 and mode == "incremental":
            log.warning("stride %d ignored: incremental mode encodes every frame once (stride is for clip mode)",
                        stride)
        self.model, self.mode, self.stride = model, mode, stride
        self.config, self.labels, self.preprocessing = model.config, model.labels, model.preprocessing
        self._run = model.runners[_RUNNER[mode]]
        cfg = self.config
        self._buffer = (FrameBuffer(cfg.num_frames, (cfg.in_chans, cfg.img_size, cfg.img_size))
                        if mode == "clip" else None)
        self.reset()

    @staticmethod
    def _unavailable(model: LoadedModel, mode: str) -> str:
        if mode == "clip":
            return (f"{model.path.name} is the incremental step (a stream-mode export); use mode 'incremental', "
                    "or export the clip model (python -m xvit_edge.export --mode clip)")
        if model.kind == "torch":
            return (f"{model.path.name}: incremental mode needs a causal mixing model (config {model.config.name!r} "
                    f"has causal={model.config.causal}); train the variant from xvit_edge.config.causal_variant, "
                    "or use mode 'clip'")
        return (f"{model.path.name} is a clip-mode export; for incremental mode export the step of a causal model "
                "(python -m xvit_edge.export --mode stream), or use mode 'clip'")

    @classmethod
    def load(cls, path: str | os.PathLike, mode: str | None = None, stride: int = 1,
             threads: int | None = None) -> "Recognizer":
        """From a checkpoint `.pt` or a `.pte` / `.onnx` artifact with its sidecar; the mode defaults to
        incremental where the model offers it, else clip."""
        return cls(load_model(path, threads), mode, stride)

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    def reset(self) -> None:
        """Forget the stream: empty buffer, zero state."""
        self.frames_seen = 0
        if self._buffer is not None:
            self._buffer.reset()
        self._state = None
        if self.mode == "incremental":
            shapes = self.model.state_shapes or StreamState.shapes(self.config)
            self._state = list(StreamState.zeros_of(shapes).as_tuple())

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """`(H, W, 3)` uint8 RGB -> `(3, S, S)` float, exactly as in training."""
        return preprocess_frame(rgb, self.preprocessing)

    def push(self, rgb: np.ndarray) -> Prediction | None:
        """One `(H, W, 3)` uint8 RGB frame."""
        return self.push_preprocessed(self.preprocess(rgb))

    def push_preprocessed(self, frame: torch.Tensor) -> Prediction | None:
        """One preprocessed `(3, S, S)` frame."""
        self.frames_seen += 1
        t = self.num_frames
        start = time.perf_counter()
        if self._buffer is not None:
            self._buffer.push(frame)
            if self.frames_seen < t or (self.frames_seen - t) % self.stride:
                return None
            logits = self._run([self._buffer.clip().unsqueeze(0)])[0]
        else:
            logits, *self._state = self._run([frame.unsqueeze(0), *self._state])
            if self.frames_seen < t:
                return None
        latency = (time.perf_counter() - start) * 1e3
        logits = logits.reshape(-1).float()
        return Prediction(self.frames_seen, logits, torch.softmax(logits, 0).numpy(), latency)
