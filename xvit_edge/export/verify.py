"""Comparing an artifact's outputs with the eager model's: max abs difference, SQNR and top-1 agreement."""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ExportError


def sample_inputs(config, count: int, seed: int = 0, preprocessing=None, frames: int | None = None,
                  ) -> list[torch.Tensor]:
    """Seeded clips `(1, frames, 3, H, W)` (default: the model's T frames).

    With `preprocessing`: synthetic videos (moving shapes on textured backgrounds, `data.synthetic`) rendered
    at the input size and normalised as the model expects. An int8 model's activation ranges come from
    calibration on real clips, and Gaussian noise drives its activations past them: the trained nano checkpoint,
    calibrated on its 12-class set, met the int8 parity bar on such clips (ExecuTorch 32.5 dB) and missed it
    on noise (28.6 dB), against the same converted model. Without: Gaussian noise, with the spread of
    normalised frames."""
    frames = frames or config.num_frames
    if preprocessing is None:
        g = torch.Generator().manual_seed(seed)
        shape = (1, frames, config.in_chans, config.img_size, config.img_size)
        return [torch.randn(shape, generator=g) for _ in range(count)]
    from ..data.synthetic import CLASSES, generate_clip
    from ..data.transforms import normalise

    rng = np.random.default_rng(seed)
    return [normalise(generate_clip(CLASSES[i % len(CLASSES)], rng, frames, config.img_size), preprocessing)[None]
            for i in range(count)]


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio of `test` against `reference`, in dB (inf when identical)."""
    noise = (reference - test).double().pow(2).mean()
    signal = reference.double().pow(2).mean()
    return math.inf if noise == 0 else float(10 * torch.log10(signal / noise))


def compare(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> dict[str, float]:
    """Distance of `outputs` from `reference`; an ExportError if either is not finite (NaN compares as "not
    larger than the bar", so a NaN model would otherwise pass every check with a NaN figure)."""
    ref, out = torch.cat(reference).float(), torch.cat(outputs).float()
    if not torch.isfinite(ref).all():
        raise ExportError("the model itself outputs NaN or infinite logits on the verification clips: check its "
                          "weights and preprocessing")
    if not torch.isfinite(out).all():
        raise ExportError("the artifact outputs NaN or infinite logits where the model does not")
    return {"samples": len(reference), "max_abs_diff": float((ref - out).abs().max()),
            "sqnr_db": sqnr_db(ref, out), "top1_agreement": float((ref.argmax(-1) == out.argmax(-1)).float().mean())}
