"""The registry of export targets, by the name the CLI takes; the order is the order `--target all` exports."""

from __future__ import annotations

from .coreml import CoreMLTarget
from .errors import ExportError
from .executorch import ExecuTorchTarget
from .onnx import OnnxTarget
from .target import Target

TARGETS: dict[str, Target] = {t.name: t for t in (ExecuTorchTarget(), CoreMLTarget(), OnnxTarget())}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ExportError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name]
