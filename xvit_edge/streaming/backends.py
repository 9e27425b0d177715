"""Loading a model for the runtime, whatever form it is stored in, behind one call signature.

- an xvit_edge checkpoint `.pt`: eager PyTorch; offers the whole-clip model, and the incremental step when the
  model is causal;
- an ExecuTorch `.pte` or ONNX `.onnx` with the sidecar JSON that export writes beside it: what the sidecar's
  `mode` says (`clip` or `stream`). The config, labels and preprocessing come from the sidecar, so no shape is
  hard-coded here.

Each runner is `run(inputs) -> outputs`, lists of tensors in the artifact's order: `[video] -> [logits]` for a
clip, `[frame, keys, values, frame_tokens] -> [logits, keys, values, frame_tokens]` for a step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Preprocessing, XViTConfig
from ..export.sidecar import read_sidecar
from ..quiet import captured_output
from .artifact_check import ArtifactMismatch, check_digest, check_file_kind, check_shapes
from ..model.streaming import StreamingStep, StreamState, streamable

log = logging.getLogger(__name__)

Run = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]
KINDS = {".pt": "torch", ".pth": "torch", ".pte": "executorch", ".onnx": "onnx"}
SIDECAR_TARGET = {"executorch": "executorch", "onnx": "onnx"}


def default_threads() -> int:
    """Inference threads for a live stream: every core but one, which the capture thread needs for decoding.

    Seen on a 2-core machine that other jobs were also using (720p h264, xvit_edge_tiny's causal step): with 2
    torch threads beside the decoding thread the cores were oversubscribed and the stream fell below 1 fps;
    with 1 it ran at about 20 fps.
    """
    return max(1, (os.cpu_count() or 1) - 1)


class ModelLoadError(ValueError):
    """A model file the runtime cannot use; the message names the file and what to do."""


@dataclass
class LoadedModel:
    """A model ready to run: `runners` maps `clip` / `stream` to a runner, for the modes this form offers."""

    path: Path
    kind: str  # torch, executorch or onnx
    config: XViTConfig
    labels: list[str]
    preprocessing: Preprocessing
    runners: dict[str, Run] = field(default_factory=dict)
    # The step's state tensors (keys, values, frame_tokens) and their shapes, for a model with a stream runner;
    # an artifact's come from its sidecar, so one exported by another xvit_edge version runs on its own layout.
    state_shapes: dict[str, list[int]] = field(default_factory=dict)
    precision: str = "fp32"  # int8: a quantized checkpoint's converted graph, or an int8 artifact


def _eager(fn: Callable[..., object]) -> Run:
    def run(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            out = fn(*inputs)
        return list(out) if isinstance(out, tuple) else [out]

    return run


def _load_checkpoint(path: Path) -> LoadedModel:
    """A checkpoint run with PyTorch; a quantized one (python -m xvit_edge.quantize) runs its int8 graph and
    int8 step, not the float weights it also holds."""
    from ..model.weights import CheckpointError, load_checkpoint
    from ..quantize.checkpoint import is_quantized

    try:
        model, meta = load_checkpoint(path)
        if is_quantized(meta.extra):
            # A checkpoint quantized before steps were calibrated has none: it runs in clip mode only.
            return _load_quantized(path, streamable(model.config) and "stream" in meta.extra["quantization"])
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from e
    runners, shapes = {"clip": _eager(model)}, {}
    if streamable(model.config):
        runners["stream"], shapes = _eager(StreamingStep(model).eval()), StreamState.shapes(model.config)
    return LoadedModel(path, "torch", model.config, meta.labels, meta.preprocessing, runners, shapes)


def _load_quantized(path: Path, stream: bool) -> LoadedModel:
    from ..quantize.checkpoint import load_quantized

    q = load_quantized(path, stream=stream)
    runners, shapes = {"clip": _eager(q.converted)}, {}
    if q.converted_step is not None:
        runners["stream"], shapes = _eager(q.converted_step), StreamState.shapes(q.config)
    return LoadedModel(path, "torch", q.config, q.labels, q.preprocessing, runners, shapes, precision="int8")


def sidecar_path(artifact: Path) -> Path:
    """Where export puts the sidecar of `name.pte` / `name.onnx`: `name.executorch.json` / `name.onnx.json`."""
    return artifact.with_name(f"{artifact.stem}.{SIDECAR_TARGET[KINDS[artifact.suffix]]}.json")


def _load_artifact(path: Path, threads: int | None) -> LoadedModel:
    kind = KINDS[path.suffix]
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelLoadError(f"{path}: no sidecar {side.name} beside it; the runtime reads the config, labels and "
                             "preprocessing from the JSON that python -m xvit_edge.export writes with the artifact")
    try:
        meta = read_sidecar(side)
    except ValueError as e:
        raise ModelLoadError(str(e)) from e
    except (OSError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{side}: not a valid sidecar ({e})") from e
    if meta["target"] != kind:
        raise ModelLoadError(f"{side}: describes a {meta['target']} artifact, not the {kind} file {path.name}")
    try:
        check_file_kind(path, kind)
        check_digest(path, meta, side)
        # The runtimes print CPU-probe lines of their own when they load a program (see `quiet`).
        with captured_output(verbose=log.isEnabledFor(logging.DEBUG)):
            if kind == "executorch":
                from ..export.executorch import load_pte, pte_io_shapes

                run, shapes = load_pte(path, threads), pte_io_shapes(path)
            else:
                from ..export.onnx import load_onnx, onnx_io_shapes

                run, shapes = load_onnx(path, threads), onnx_io_shapes(path)
        check_shapes(path, meta, *shapes)
    except ArtifactMismatch as e:
        raise ModelLoadError(str(e)) from e
    except ImportError as e:
        raise ModelLoadError(f"running {path.name} needs the '{e.name}' package: "
                             "pip install -c constraints.txt 'xvit-edge[export]'") from e
    except Exception as e:  # noqa: BLE001 - each runtime has its own error types for a corrupt file
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path}: the {kind} runtime cannot load it ({first_line})") from e
    mode = meta.get("mode", "clip")
    return LoadedModel(path, kind, meta["config"], meta["labels"], meta["preprocessing"], {mode: run},
                       meta.get("state_shapes") or {}, meta.get("precision", "fp32"))


def load_model(path: str | os.PathLike, threads: int | None = None) -> LoadedModel:
    """Load a checkpoint `.pt`, or a `.pte` / `.onnx` artifact (or its sidecar `.json`); `threads` sizes the
    runtime's thread pool (torch: the process-wide intra-op setting)."""
    path = Path(path)
    if path.suffix == ".json":  # the sidecar itself: the artifact it names sits beside it
        try:
            path = path.with_name(read_sidecar(path)["artifact"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{path}: not a readable sidecar ({e})") from e
    if path.suffix == ".mlpackage":
        raise ModelLoadError(f"{path}: Core ML models run only on Apple platforms; use the .pte or .onnx "
                             "artifact, or the checkpoint, here")
    if path.suffix not in KINDS:
        raise ModelLoadError(f"{path}: unknown model type {path.suffix or '(no extension)'!r}; expected a checkpoint "
                             ".pt, an ExecuTorch .pte or an ONNX .onnx (with its sidecar JSON)")
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if threads is not None and KINDS[path.suffix] == "torch":
        torch.set_num_threads(threads)
    loaded = _load_checkpoint(path) if KINDS[path.suffix] == "torch" else _load_artifact(path, threads)
    log.info("loaded %s (%s %s; modes %s)", path, loaded.kind, loaded.precision, ", ".join(loaded.runners))
    return loaded
