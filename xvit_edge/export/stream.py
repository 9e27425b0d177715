"""Stream mode: exporting the incremental step of a causal model.

ExecuTorch and ONNX: the artifact's `forward(frame, keys, values, frame_tokens) -> (logits, keys_out,
values_out, frame_tokens_out)`, the state as explicit tensors; a runtime feeds each `*_out` back as the next
frame's input of the same name. ONNX needs the outputs to be named apart from the inputs, hence the suffix.
It is verified the only way that catches dropped state: by streaming more frames than the clip holds through
the artifact, the state fed back each time, against the eager step.

Core ML (iOS 18+): `StatefulStep`, `forward(frame) -> logits`, the state kept inside the model as Core ML
states, so a runtime feeds frames only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..config import XViTConfig
from ..model import XViT
from ..model.streaming import STATE_NAMES, StreamingStep, StreamState
from .verify import compare, sample_inputs

INPUT_NAMES = ("frame", *STATE_NAMES)
OUTPUT_NAMES = ("logits", *(f"{n}_out" for n in STATE_NAMES))
# Frames streamed beyond the clip length when verifying, so the rolling window has wrapped around.
EXTRA_FRAMES = 3

Call = Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]]


class StatefulStep(torch.nn.Module):
    """`forward(frame) -> logits`: the streaming step with its state in buffers named as `STATE_NAMES`,
    overwritten whole after every frame. coremltools turns such mutable buffers into Core ML states; a fresh
    module (like a fresh Core ML state) starts from zeros.

    `step` is `model`'s float step by default, or another module with the step's signature (a quantized
    checkpoint's converted int8 step)."""

    def __init__(self, model: XViT, step: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.step = StreamingStep(model).eval() if step is None else step
        for name, tensor in zip(STATE_NAMES, StreamState.zeros(model.config).as_tuple()):
            self.register_buffer(name, tensor)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        logits, *state = self.step(frame, *(getattr(self, n) for n in STATE_NAMES))
        # Whole-tensor copies: torch.export records each as one buffer mutation, which coremltools converts
        # into one write of the matching Core ML state at the end of the program.
        for name, value in zip(STATE_NAMES, state):
            getattr(self, name).copy_(value)
        return logits


def not_streamable_message(config: XViTConfig) -> str:
    return (f"stream mode needs a causal mixing model, and config {config.name!r} has attention="
            f"{config.attention!r}, causal={config.causal}: build and train the streaming variant with "
            "xvit_edge.config.causal_variant(config), or export this model with mode 'clip'")


def example_inputs(config: XViTConfig) -> tuple[torch.Tensor, ...]:
    """One seeded frame and a fresh (zero) state: the step's export example."""
    g = torch.Generator().manual_seed(1234)
    frame = torch.randn(1, config.in_chans, config.img_size, config.img_size, generator=g)
    return (frame, *StreamState.zeros(config).as_tuple())


def sample_streams(config: XViTConfig, count: int, seed: int = 0, preprocessing=None) -> list[torch.Tensor]:
    """Seeded streams of T + EXTRA_FRAMES frames, `(1, F, 3, H, W)` each (see `verify.sample_inputs`)."""
    return sample_inputs(config, count, seed, preprocessing, frames=config.num_frames + EXTRA_FRAMES)


def stream_outputs(call: Call, frames: torch.Tensor, config: XViTConfig,
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Feed `(1, F, 3, H, W)` frames one by one through `call`, the state fed back; the logits after each frame
    and the final state."""
    carry: Sequence[torch.Tensor] = StreamState.zeros(config, frames.shape[0]).as_tuple()
    logits = []
    for t in range(frames.shape[1]):
        out, *carry = call([frames[:, t], *carry])
        logits.append(out)
    return logits, list(carry)


Run = list[tuple[list[torch.Tensor], list[torch.Tensor]]]  # per stream: logits after each frame, final state


def stream_runs(call: Call, config: XViTConfig, samples: int, preprocessing=None) -> Run:
    """`call` over the seeded verification streams (`sample_streams`), the state fed back."""
    with torch.no_grad():
        return [stream_outputs(call, frames, config)
                for frames in sample_streams(config, samples, preprocessing=preprocessing)]


def compare_runs(expected: Run, got: Run, config: XViTConfig) -> dict:
    """Two runs over the same streams: logits after every frame and the final state compared; `max_abs_diff`
    is the larger of the two, so lost or corrupted state cannot hide behind small logits.

    SQNR and differences cover every frame. Top-1 agreement covers the frames the runtime answers on, those
    with a full window (the streaming runtime shows no prediction before T frames): during the warm-up the
    logits of a partial window can be near ties (a 0.03 margin on the shipped int8 step), where int8 kernels
    and PyTorch's reference ones pick different classes without either being wrong."""
    state_diff = max(float((a - b).abs().max()) for (_, want), (_, have) in zip(expected, got)
                     for a, b in zip(want, have))
    result = compare([x for logits, _ in expected for x in logits], [x for logits, _ in got for x in logits])
    answered = slice(config.num_frames - 1, None)
    agreement = compare([x for logits, _ in expected for x in logits[answered]],
                        [x for logits, _ in got for x in logits[answered]])["top1_agreement"]
    return {**result, "top1_agreement": agreement, "top1_over": f"frames {config.num_frames} to "
            f"{config.num_frames + EXTRA_FRAMES} of each stream (a full window)",
            "logits_max_abs_diff": result["max_abs_diff"], "state_max_abs_diff": state_diff,
            "max_abs_diff": max(result["max_abs_diff"], state_diff), "streams": len(expected),
            "frames_per_stream": config.num_frames + EXTRA_FRAMES}


def verify_step(reference: Call, call: Call, config: XViTConfig, samples: int, preprocessing=None) -> dict:
    """The artifact `call` against the `reference` step (the eager one, or the converted int8 graph) over
    the same streams (`compare_runs`)."""
    return compare_runs(stream_runs(reference, config, samples, preprocessing),
                        stream_runs(call, config, samples, preprocessing), config)


def eager_step(model: XViT) -> Call:
    """The eager float step of `model` as a `Call`."""
    step = StreamingStep(model).eval()
    return lambda xs: step(*xs)
