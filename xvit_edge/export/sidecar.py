"""The sidecar JSON written beside every artifact: all a runtime needs to feed it and read its output
(config, labels, preprocessing, input/output shapes, precision, tool versions, verification results)."""

from __future__ import annotations

import hashlib
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
# What every sidecar holds; a runtime refuses one that lacks any of them.
REQUIRED_KEYS = ("format", "artifact", "target", "mode", "config", "labels", "preprocessing", "input", "output",
                 "state_shapes")
TOOLS = ("torch", "executorch", "torchao", "coremltools", "onnx", "onnxruntime", "onnxscript", "numpy", "xvit-edge")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def artifact_digest(path: str | Path) -> str:
    """sha256 of an artifact: of the file, or of a package folder's files (relative paths and contents, in
    order), so that a runtime can tell that a sidecar describes this very artifact."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def build_sidecar(artifact: str, target: Target, subject: Subject, verification: dict[str, Any],
                  digest: str | None = None) -> dict[str, Any]:
    """The sidecar of `subject` exported to `target` as `artifact` (sha256 `digest`); the target adds how its
    state is kept (stream mode) and how to run it."""
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
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "artifact": artifact,
        **({"artifact_sha256": digest} if digest else {}), "target": target.name,
        "precision": subject.precision, "mode": subject.mode.name, "config": config.to_dict(),
        "labels": list(subject.labels), "preprocessing": subject.preprocessing.to_dict(), **io, "frames": t,
        "tools": tool_versions(), "verification": verification,
        **({"quantization": quantization} if quantization is not None else {}),
        **target.sidecar(),
    }


def write_sidecar(path: Path, sidecar: dict[str, Any]) -> None:
    path.write_text(json.dumps(sidecar, indent=2))


def names_artifact(sidecar: Path, filename: str) -> bool:
    """Whether `sidecar` is one of ours, written for the artifact `filename` beside it (an export may replace
    that pair; a quick look, not `read_sidecar`'s checks)."""
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT and data.get("artifact") == filename


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read and check a sidecar; returns the dict with `config` and `preprocessing` as objects. A ValueError
    names what is wrong: not JSON, not an object, not ours, a key missing, labels that do not fit the model."""
    try:
        data = json.loads(Path(path).read_text())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path}: not an xvit_edge sidecar (no 'format': {SIDECAR_FORMAT!r} object)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: the sidecar lacks {', '.join(missing)}; export the model again")
    if data["mode"] not in ("clip", "stream"):
        raise ValueError(f"{path}: unknown mode {data['mode']!r} (clip or stream)")
    try:
        data["config"] = XViTConfig.from_dict(data["config"])
        data["preprocessing"] = Preprocessing.from_dict(data["preprocessing"])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: its config or preprocessing is not valid ({e})") from e
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) \
            or len(labels) != data["config"].num_classes:
        raise ValueError(f"{path}: its labels are not {data['config'].num_classes} names, one per class of the "
                         "model's output")
    _check_shapes(path, data)
    return data


def _check_shapes(path: str | Path, data: dict[str, Any]) -> None:
    """The recorded frames, input and state shapes must be the config's: an edited config (say num_frames)
    would otherwise have the runtime answer before its window is full, silently."""
    config, pre = data["config"], data["preprocessing"]
    t, c, s = config.num_frames, config.in_chans, config.img_size
    shape = [1, t, c, s, s] if data["mode"] == "clip" else [1, c, s, s]
    state = StreamState.shapes(config) if data["mode"] == "stream" else {}
    try:
        recorded = (data["frames"], data["input"]["shape"], data["output"]["shape"], data.get("state_shapes") or {})
    except (TypeError, KeyError) as e:
        raise ValueError(f"{path}: its input or output record is not valid ({e}); export the model again") from e
    if pre.crop_size != s or recorded != (t, shape, [1, config.num_classes], state):
        raise ValueError(f"{path}: its frames, crop or input/output shapes do not match its config ({t} frames of "
                         f"{s} px, {config.num_classes} classes); export the model again")
