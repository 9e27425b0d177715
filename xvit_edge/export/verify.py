"""Comparing an artifact's outputs with the eager model's: max abs difference, SQNR and top-1 agreement."""

from __future__ import annotations

import math

import torch


def sample_inputs(config, count: int, seed: int = 0) -> list[torch.Tensor]:
    """Seeded clips shaped like the model's input, with the spread of normalised frames."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, config.num_frames, config.in_chans, config.img_size, config.img_size)
    return [torch.randn(shape, generator=g) for _ in range(count)]


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio of `test` against `reference`, in dB (inf when identical)."""
    noise = (reference - test).double().pow(2).mean()
    signal = reference.double().pow(2).mean()
    return math.inf if noise == 0 else float(10 * torch.log10(signal / noise))


def compare(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> dict[str, float]:
    ref, out = torch.cat(reference).float(), torch.cat(outputs).float()
    return {"samples": len(reference), "max_abs_diff": float((ref - out).abs().max()),
            "sqnr_db": sqnr_db(ref, out), "top1_agreement": float((ref.argmax(-1) == out.argmax(-1)).float().mean())}
