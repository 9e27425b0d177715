"""The sidecar JSON written beside every artifact: all a runtime needs to feed it and read its output
(config, labels, preprocessing, input/output shapes, precision, tool versions, verification results)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

from ..config import Preprocessing, XViTConfig

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


def build_sidecar(artifact: str, target: str, precision: str, config: XViTConfig, labels: list[str],
                  preprocessing: Preprocessing, verification: dict[str, Any], mode: str = "clip",
                  quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """`quantization`: how an int8 artifact was quantized (scheme, mode, which ops run in int8)."""
    t, s = config.num_frames, config.img_size
    io: dict[str, Any] = {
        "input": {"name": "video", "shape": [1, t, config.in_chans, s, s], "dtype": "float32",
                  "layout": "(batch, frames, RGB channels, height, width), normalised with preprocessing"},
        "output": {"name": "logits", "shape": [1, config.num_classes], "dtype": "float32"},
        "state_shapes": {},
    }
    if mode == "stream":
        from ..model.streaming import StreamState
        from .stream import INPUT_NAMES, OUTPUT_NAMES, STATE_NAMES

        io["input"] = {"name": "frame", "shape": [1, config.in_chans, s, s], "dtype": "float32",
                       "layout": "(batch, RGB channels, height, width): one frame, normalised with preprocessing"}
        io["state_shapes"] = StreamState.shapes(config)
        if target == "coreml":  # the model keeps its state: a runtime neither feeds nor reads it
            io["state"] = {"storage": "internal (Core ML states)", "names": list(STATE_NAMES), "dtype": "float16",
                           "initial": "zeros",
                           "signature": "(frame) -> (logits); one Core ML state per stream (MLModel.makeState(), "
                                        "iOS 18+), passed to every prediction of that stream"}
        else:
            io["state"] = {"inputs": list(STATE_NAMES), "outputs": list(OUTPUT_NAMES[1:]), "initial": "zeros",
                           "signature": f"({', '.join(INPUT_NAMES)}) -> ({', '.join(OUTPUT_NAMES)}); "
                                        "feed each *_out back as the next frame's input of the same name"}
    return {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "artifact": artifact, "target": target,
        "precision": precision, "mode": mode, "config": config.to_dict(), "labels": list(labels),
        "preprocessing": preprocessing.to_dict(), **io, "frames": t, "tools": tool_versions(),
        "verification": verification,
        **({"quantization": quantization} if quantization is not None else {}),
        **({"onnxruntime": _onnxruntime_session()} if target == "onnx" else {}),
    }


def _onnxruntime_session() -> dict[str, Any]:
    """How the artifact was verified and should be run with onnxruntime."""
    from .onnx import ORT_DISABLED_OPTIMIZERS

    return {"graph_optimization_level": "ORT_ENABLE_ALL", "disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
            "why": "QDQS8ToU8Transformer moves int8 activations to uint8 for x86 u8s8 kernels, which saturate "
                   "on AVX2 CPUs without VNNI; leave it off (InferenceSession(..., disabled_optimizers=[...]))"}


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
