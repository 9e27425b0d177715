"""What every export target provides. A target is one runtime: its dependency check, how it writes an
artifact with its metadata, its own structural checks, and how to run an artifact here (or why it cannot).
The registry of targets is `targets.TARGETS`; a new runtime is one module with a `Target` subclass and one
line there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExportError
from .int8 import checkpoint_record
from .modes import Call
from .parity import Bar, Fp32Bar
from .stream import INPUT_NAMES, OUTPUT_NAMES, STATE_NAMES

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint
    from .subject import Subject


class Target:
    """Defaults shared by the targets; each overrides what differs."""

    name: str  # the CLI's --target value
    title: str  # how messages name the runtime
    extension: str  # the artifact's file extension
    packages: tuple[str, ...]  # imports the target needs, all from the `export` extra
    precisions: tuple[str, ...] = ("fp32", "int8")
    default_precision = "fp32"
    keeps_state = False  # stream mode: the state lives inside the artifact instead of being passed in and out
    int8_schemes: tuple[str, ...] = ("static",)  # how a quantized checkpoint's activations may be quantized

    def int8_from_checkpoint(self, has_checkpoint: bool, mode: str) -> bool:
        """Whether int8 exports the quantized checkpoint's converted graph (else the target quantizes the
        float weights itself); this default needs the checkpoint, and asks for one when it is missing."""
        return True

    def require(self) -> None:
        """Refuse early, naming the extra to install, when the target's packages are missing."""
        for name in self.packages:
            try:
                __import__(name)
            except ImportError as e:
                raise ExportError(f"the {self.name} export needs the '{name}' package: "
                                  "pip install -c constraints.txt 'xvit-edge[export]'") from e

    def quantization(self, quantized: QuantizedCheckpoint | None, mode: str) -> dict[str, Any]:
        """The sidecar's record of how an int8 artifact was quantized."""
        return checkpoint_record(quantized, mode)

    def float_bar(self, precision: str, mode: str) -> Bar:
        """The bar an artifact of the float model is held to, against the eager model."""
        return Fp32Bar()

    def write(self, subject: Subject, path: Path) -> dict[str, Any]:
        """Convert `subject.program(self.keeps_state)` into `path`; the report's entries about it."""
        raise NotImplementedError

    def check(self, report: dict[str, Any], subject: Subject) -> None:
        """Structural checks of the written artifact (raise ExportError); none by default."""

    def runner(self, path: Path) -> Call | None:
        """`call(inputs) -> outputs` running the artifact here, or None where this machine cannot."""
        raise NotImplementedError

    # What `runner` runs the artifact with, for the sidecar's parity record.
    runs_on = ""

    def not_run(self, report: dict[str, Any]) -> dict[str, Any]:
        """The parity entry of an artifact that cannot run here: what was checked instead."""
        return {"numeric": "not run"}

    def state_record(self) -> dict[str, Any]:
        """The sidecar's `state` entry in stream mode: how a runtime carries the state."""
        return {"inputs": list(STATE_NAMES), "outputs": list(OUTPUT_NAMES[1:]), "initial": "zeros",
                "signature": f"({', '.join(INPUT_NAMES)}) -> ({', '.join(OUTPUT_NAMES)}); "
                             "feed each *_out back as the next frame's input of the same name"}

    def sidecar(self) -> dict[str, Any]:
        """Target-specific sidecar entries (how to run the artifact)."""
        return {}

    def summary(self, report: dict[str, Any], precision: str) -> str:
        """What the CLI adds to its line about the artifact, after the parity figures."""
        return ""
