"""The sidecar JSON written beside every artifact: all a runtime needs to feed it and read its output
(config, labels, preprocessing, input/output shapes, precision, tool versions, verification results)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Preprocessing, XViTConfig
from ..model.streaming import StreamState

if TYPE_CHECKING:
    from .subject import Subject
    from .target import Target

SIDECAR_FORMAT = "xvit_edge.sidecar"
SIDECAR_VERSION = 1
TOOLS = ("torch", "executorch", "torchao", "coremltools", "onnx", "onnxruntime", "onnxscript", "numpy", "xvit-edge")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def build_sidecar(artifact: str, target: Target, subject: Subject, verification: dict[str, Any]) -> dict[str, Any]:
    """The sidecar of `subject` exported to `target` as `artifact`; the target adds how its state is kept
    (stream mode) and how to run it."""
    config = subject.config
    t, s = config.num_frames, config.img_size
    io: dict[str, Any] = {
        "input": {"name": "video", "shape": [1, t, config.in_chans, s, s], "dtype": "float32",
                  "layout": "(batch, frames, RGB channels, height, width), normalised with preprocessing"},
        "output": {"name": "logits", "shape": [1, config.num_classes], "dtype": "float32"},
        "state_shapes": {},
    }
    if subject.mode.name == "stream":
        io["input"] = {"name": "frame", "shape": [1, config.in_chans, s, s], "dtype": "float32",
                       "layout": "(batch, RGB channels, height, width): one frame, normalised with preprocessing"}
        io["state_shapes"] = StreamState.shapes(config)
        io["state"] = target.state_record()
    quantization = subject.quantization
    return {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "artifact": artifact, "target": target.name,
        "precision": subject.precision, "mode": subject.mode.name, "config": config.to_dict(),
        "labels": list(subject.labels), "preprocessing": subject.preprocessing.to_dict(), **io, "frames": t,
        "tools": tool_versions(), "verification": verification,
        **({"quantization": quantization} if quantization is not None else {}),
        **target.sidecar(),
    }


def write_sidecar(path: Path, sidecar: dict[str, Any]) -> None:
    path.write_text(json.dumps(sidecar, indent=2))


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read and check a sidecar; returns the dict with `config` and `preprocessing` as objects."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path}: not an xvit_edge sidecar")
    data["config"] = XViTConfig.from_dict(data["config"])
    data["preprocessing"] = Preprocessing.from_dict(data["preprocessing"])
    return data
