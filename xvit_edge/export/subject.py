"""The subject of an export: what is exported and what the artifact must reproduce, built once from the
model, the mode, the precision and (int8) the quantized checkpoint. Targets read their program and metadata
from it; `verify` runs an artifact over its seeded samples and holds it to its bar (`parity`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from ..config import Preprocessing, XViTConfig
from ..model import XViT
from .int8 import check_int8_scheme, int8_module
from .modes import Call, ClipMode, Program, StreamMode
from .parity import Bar, Int8Bar

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint
    from .target import Target


@dataclass
class Subject:
    """`exported` is what the target converts and what its outputs must match (`reference`): the float model
    or its step, or for int8 from a quantized checkpoint the converted graph or step. `model` is the float
    model, which int8 artifacts are also compared with, for information."""

    mode: ClipMode | StreamMode
    model: XViT
    exported: torch.nn.Module
    precision: str
    labels: list[str]
    preprocessing: Preprocessing
    bar: Bar
    samples: int
    quantization: dict[str, Any] | None = None
    int8_graph: bool = False  # `exported` is a quantized checkpoint's converted int8 graph or step

    @property
    def config(self) -> XViTConfig:
        return self.model.config

    @property
    def name(self) -> str:
        """The artifact's default name, without extension."""
        return f"{self.config.name}_{self.precision}{self.mode.suffix}"

    def program(self, keeps_state: bool = False) -> Program:
        return self.mode.program(self.exported, self.model, keeps_state)

    def metadata(self, keeps_state: bool = False) -> dict[str, str]:
        """What every artifact embeds about itself (string values; targets pick the keys their format holds)."""
        cfg = self.config
        meta = {"labels": json.dumps(list(self.labels)), "preprocessing": json.dumps(self.preprocessing.to_dict()),
                "xvit_config": json.dumps(cfg.to_dict()), "mode": self.mode.name,
                "description": f"X-ViT video classifier ({cfg.name}, {cfg.num_frames} frames, {cfg.img_size} px, "
                               f"{cfg.num_classes} classes" + self.mode.description(keeps_state)}
        if self.quantization is not None:
            meta["quantization"] = json.dumps(self.quantization)
        return meta

    def run(self, call: Call) -> Any:
        """`call` over the seeded samples (clips, or streams with the state fed back)."""
        return self.mode.run(call, self.config, self.samples, self.preprocessing)

    @cached_property
    def reference(self) -> Any:
        """What the artifact must reproduce, on the same samples."""
        return self.run(self.mode.call(self.exported))

    def verify(self, target: str, call: Call) -> dict[str, Any]:
        """Run the artifact's `call` over the samples, compare with `reference`, hold it to the bar; the
        report's entries (`parity`, and for int8 `int8_vs_fp32`)."""
        got = self.run(call)
        parity = self.mode.compare(self.reference, got, self.config)
        extra = self.bar.judge(target, parity, lambda: self.compare_with_float(got),
                               f"the converted int8 {self.mode.noun} (PyTorch)")
        return {"parity": parity, **extra}

    def compare_with_float(self, got: Any) -> dict[str, Any]:
        """An artifact's outputs against the float model's (eager) on the same samples."""
        expected = self.run(self.mode.call(self.mode.float_module(self.model)))
        return self.mode.compare(expected, got, self.config)


def build_subject(model: XViT, mode: ClipMode | StreamMode, precision: str, target: Target, labels: list[str],
                  preprocessing: Preprocessing, samples: int, quantized: QuantizedCheckpoint | None,
                  int8_min_sqnr: float) -> Subject:
    """int8 for a target that runs the quantized checkpoint's converted graph (`target.int8_from_checkpoint`)
    exports that graph and is held to the int8 bar; everything else exports the float model (a target may
    quantize its weights itself) and is held to the fp32 bar."""
    model = model.eval()
    mode.check(model.config)
    exported, bar = mode.float_module(model), target.float_bar(precision, mode.name)
    quantization, int8_graph = None, False
    if precision == "int8":
        int8_graph = target.int8_from_checkpoint(quantized is not None, mode.name)
        if int8_graph:
            check_int8_scheme(target, quantized)
            exported, bar = int8_module(target.name, model, quantized, mode.name), Int8Bar(int8_min_sqnr)
        quantization = target.quantization(quantized, mode.name)
    return Subject(mode, model, exported, precision, list(labels), preprocessing, bar, samples, quantization,
                   precision == "int8" and int8_graph)
