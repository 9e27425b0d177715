"""Wall-clock timing the same way everywhere: warm-up runs, then repeated runs; median and p90."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Latency statistics in milliseconds, with how they were measured."""

    median_ms: float
    p90_ms: float
    min_ms: float
    repeats: int
    warmup: int
    threads: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@contextmanager
def torch_threads(n: int):
    """Run a block with `n` intra-op threads, restoring the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int, threads: int) -> Timing:
    """Time `fn()` `repeats` times after `warmup` untimed calls, with `threads` torch threads."""
    with torch_threads(threads):
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    p90 = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
    return Timing(statistics.median(samples), p90, samples[0], repeats, warmup, threads)
