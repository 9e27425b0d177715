"""What a mode changes in an export: the program's inputs and outputs, the verification samples, how an
artifact is run over them and how two runs compare. Clip: one call per seeded clip. Stream: seeded streams of
T + `stream.EXTRA_FRAMES` frames, one call per frame, the state fed back (see `stream`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import Preprocessing, XViTConfig
from ..model import XViT
from ..model.streaming import StreamingStep, streamable
from . import stream
from .errors import ExportError
from .verify import compare, sample_inputs

Call = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]


@dataclass(frozen=True)
class Program:
    """What a target converts: `module(*example)`, with the names of its inputs and outputs; `state_names`
    are buffers the module overwrites on every call, which a target keeps inside the artifact."""

    module: torch.nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_names: tuple[str, ...] = ()


class ClipMode:
    """The whole-clip classifier: T frames in, logits out."""

    name = "clip"
    suffix = ""
    noun = "model"

    def check(self, config: XViTConfig) -> None:
        """Every model exports as a clip classifier."""

    def float_module(self, model: XViT) -> torch.nn.Module:
        return model

    def program(self, module: torch.nn.Module, model: XViT, keeps_state: bool) -> Program:
        example = (sample_inputs(model.config, 1, seed=1234)[0],)
        return Program(module, example, ("video",), ("logits",))

    def description(self, keeps_state: bool) -> str:
        return ")"

    def call(self, module: torch.nn.Module) -> Call:
        return lambda xs: [module(*xs)]

    def run(self, call: Call, config: XViTConfig, samples: int, preprocessing: Preprocessing) -> list[torch.Tensor]:
        """The logits of `call` on each seeded clip."""
        with torch.no_grad():
            return [call([x])[0] for x in sample_inputs(config, samples, preprocessing=preprocessing)]

    def compare(self, expected: list[torch.Tensor], got: list[torch.Tensor], config: XViTConfig) -> dict[str, Any]:
        return compare(expected, got)


class StreamMode:
    """The incremental step of a causal model: one frame and the state in, logits and the new state out; or,
    for a target that keeps the state inside the artifact, frame in and logits out."""

    name = "stream"
    suffix = "_stream"
    noun = "step"

    def check(self, config: XViTConfig) -> None:
        if not streamable(config):
            raise ExportError(stream.not_streamable_message(config))

    def float_module(self, model: XViT) -> torch.nn.Module:
        return StreamingStep(model).eval()

    def program(self, module: torch.nn.Module, model: XViT, keeps_state: bool) -> Program:
        example = stream.example_inputs(model.config)
        if keeps_state:  # the step (float or int8) with its state in buffers; it stays inside the artifact
            # No .eval() on the wrapper: a converted PT2E step refuses train()/eval(), and the float step
            # is already in eval mode.
            return Program(stream.StatefulStep(model, module), example[:1], ("frame",), ("logits",),
                           stream.STATE_NAMES)
        return Program(module, example, stream.INPUT_NAMES, stream.OUTPUT_NAMES)

    def description(self, keeps_state: bool) -> str:
        return ", one frame per call, state kept in the model)" if keeps_state \
            else ", one frame per call, state in and out)"

    def call(self, module: torch.nn.Module) -> Call:
        return lambda xs: module(*xs)

    def run(self, call: Call, config: XViTConfig, samples: int, preprocessing: Preprocessing) -> stream.Run:
        return stream.stream_runs(call, config, samples, preprocessing)

    def compare(self, expected: stream.Run, got: stream.Run, config: XViTConfig) -> dict[str, Any]:
        return stream.compare_runs(expected, got, config)


MODES = {mode.name: mode for mode in (ClipMode(), StreamMode())}
