"""int8 for the incremental step of a causal model (`model.streaming.StreamingStep`).

The step is a graph of its own (one frame and the carried state in; logits and the new state out), so the
whole-clip graph's observers cannot be reused: its activations are captured and observed separately, with
the PTQ settings of `scheme` (the same ops int8, the same ops float). They are calibrated by streaming
calibration clips through the step frame by frame from a fresh state, so every observer sees what a live
stream shows it, the carried keys and values included. A QAT checkpoint's step is calibrated on the
fine-tuned float weights: QAT moves the weights to where int8 rounding hurts less, and the step's
activation ranges are then measured, not learned.

From a fresh state, the step's logits after T frames are the whole-clip logits (see `model.streaming`), so
the int8 step is scored on held-out clips exactly like the int8 clip model (`StreamedClips`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..config import XViTConfig
from ..model import XViT
from ..model.streaming import StreamingStep, StreamState, streamable
from .calibrate import calibrate
from .convert import QuantizedModel, convert_graph
from .guard import ObserverGuard
from .scheme import DEFAULT_SCHEME, FLOAT_OPS, MAX_BATCH, build_quantizer, quant_modules

log = logging.getLogger(__name__)

MODE = "ptq"  # how the step's ranges are found, whatever the clip model's mode


class StreamedClips(nn.Module):
    """`forward(clips) -> logits`: clips `(B, T, 3, H, W)` streamed frame by frame through `step` (a
    `StreamingStep`, or a captured, prepared or converted graph of one) from a fresh state; the logits after
    the last frame."""

    def __init__(self, step: Callable[..., tuple[torch.Tensor, ...]], config: XViTConfig) -> None:
        super().__init__()
        self.step, self.config = step, config

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        carry = StreamState.zeros(self.config, clips.shape[0]).as_tuple()
        for t in range(clips.shape[1]):
            logits, *carry = self.step(clips[:, t], *carry)
        return logits


def capture_step(model: XViT) -> torch.fx.GraphModule:
    """`torch.export` of the model's step with a symbolic batch axis (the state's batch axis too), on its own
    copy of the weights (see `scheme.capture`)."""
    cfg = model.config
    step = StreamingStep(copy.deepcopy(model).eval()).eval()
    frame = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
    example = (frame, *StreamState.zeros(cfg, 2).as_tuple())
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(step, example, dynamic_shapes=({0: batch}, {1: batch}, {1: batch}, {0: batch}))
    return program.module()


def prepare_step(model: XViT, scheme: str = DEFAULT_SCHEME) -> torch.fx.GraphModule:
    """The step's graph with PTQ observers (the quantizer of `scheme.build_quantizer` for `scheme`, with
    `FLOAT_OPS` kept float)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(capture_step(model), build_quantizer(MODE, FLOAT_OPS, scheme))
    log.info("streaming step: %d observers inserted", len(quant_modules(prepared)))
    return prepared


def calibrate_step(prepared: torch.fx.GraphModule, config: XViTConfig, batches: Iterable[torch.Tensor | None],
                   max_batches: int) -> tuple[int, list[str]]:
    """Stream up to `max_batches` good batches of clips through the prepared step (`calibrate.calibrate`);
    returns how many were used and why others were skipped (non-finite values: see `guard`). Raises
    ValueError when none was usable."""
    guard = ObserverGuard(prepared)
    used = calibrate(StreamedClips(prepared, config), batches, max_batches, guard, what="step calibration")
    return used, list(guard.skipped)


def observer_state(prepared: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """The prepared step's state that is not a model weight (what a checkpoint stores to rebuild it)."""
    return {k: v.detach().clone() for k, v in prepared.state_dict().items() if not k.startswith("model.")}


def quantize_step(q: QuantizedModel, batches: Iterable[torch.Tensor | None], max_batches: int) -> None:
    """Calibrate and convert the streaming step of `q`'s float model on clips, in place
    (`q.step_prepared`, `q.step_converted`); nothing for a model that does not stream."""
    if not streamable(q.config):
        return
    prepared = prepare_step(q.float_model, q.scheme)
    _, skipped = calibrate_step(prepared, q.config, batches, max_batches)
    q.skipped += skipped
    q.step_prepared, q.step_converted = prepared, convert_graph(prepared)
