"""The machine's own peak: fp32 GEMM throughput, the ceiling every model's achieved GFLOP/s is compared to."""

from __future__ import annotations

import torch

from .timing import time_call


def gemm_gflops(threads: int, size: int = 1024, repeats: int = 10, warmup: int = 3) -> dict:
    """Median GFLOP/s (2 FLOPs per multiply-accumulate) of a square fp32 `torch.mm` of `size`."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    timing = time_call(lambda: torch.mm(a, b), repeats=repeats, warmup=warmup, threads=threads)
    return {"size": size, "gflops": 2 * size**3 / (timing.median_ms * 1e-3) / 1e9, **timing.to_dict()}
