"""Wall-clock timing the same way everywhere: warm-up runs, then repeated runs; median and p90."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
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
    return time_calls([fn], repeats=repeats, warmup=warmup, threads=threads)[0]


def time_calls(fns: Sequence[Callable[[], object]], *, repeats: int, warmup: int, threads: int,
               side_by_side: bool = True) -> list[Timing]:
    """Time several calls side by side: each round calls every `fn` once, in turn, so that a drift of the
    machine's speed (another process, the clock) lands on all of them alike and their ratio stays fair.

    Side by side suits calls that share one thread pool (torch's, ExecuTorch's). Each onnxruntime session has
    its own pool, whose threads spin for a while after a run: two sessions taking turns on 2 cores slowed each
    other down (a step timed at 24 ms beside its clip model, 14 ms alone), so pass `side_by_side=False` for
    them: each call is then timed in a block of its own, one after the other."""
    if not side_by_side:
        return [time_calls([fn], repeats=repeats, warmup=warmup, threads=threads)[0] for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    with torch_threads(threads):
        for _ in range(warmup):
            for fn in fns:
                fn()
        for _ in range(repeats):
            for fn, times in zip(fns, samples):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
    return [_timing(times, repeats, warmup, threads) for times in samples]


def median_p90(samples_ms: list[float]) -> tuple[float, float]:
    """The median and the 90th percentile (nearest rank) of some latencies."""
    s = sorted(samples_ms)
    return statistics.median(s), s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def _timing(samples: list[float], repeats: int, warmup: int, threads: int) -> Timing:
    return Timing(*median_p90(samples), min(samples), repeats, warmup, threads)
