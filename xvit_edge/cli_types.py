"""argparse `type=` functions that refuse a number out of range when the command line is parsed.

A batch size of 0, a NaN learning rate or a threshold of 1.5 would otherwise be taken and fail much later
(or not at all, with a wrong answer). Each function raises `argparse.ArgumentTypeError`, so argparse prints
the usage and one line naming the flag and what it takes, and exits with code 2:

    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--alpha", type=positive_fraction, default=0.3)
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

__all__ = ["LOG_LEVELS", "HelpFormatter", "even_int_at_least", "finite_float", "float_in", "int_at_least",
           "nonnegative_float", "nonnegative_int", "positive_even_int", "positive_float", "positive_fraction",
           "positive_int", "probability", "thread_count", "worker_count"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except the empty ones (None, False): those would only add "(default: None)"
    after a help text that already says what happens without the flag."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _whole_in(low: int, high: int | None, even: bool) -> Callable[[str], int]:
    """A parser for whole numbers from `low` (to `high` if given), even ones only if `even`."""
    what = (f"{'an even' if even else 'a'} whole number "
            + (f">= {low}" if high is None else f"from {low} to {high}"))

    def parse(text: str) -> int:
        value = _whole(text, what)
        if value < low or (high is not None and value > high) or (even and value % 2):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser for whole numbers >= `low` (and <= `high` if given)."""
    return _whole_in(low, high, even=False)


def even_int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser for even whole numbers >= `low` (and <= `high` if given; frame sizes: the mp4v codec needs even
    ones)."""
    return _whole_in(low, high, even=True)


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)
positive_even_int = even_int_at_least(2)
# Threads or processes: more than a few per core only slows a run down, and thousands crash it (OpenBLAS and
# OpenMP die on the process limit, with a segmentation fault at worst).
MAX_PARALLEL = max(64, 4 * (os.cpu_count() or 1))
thread_count = int_at_least(1, MAX_PARALLEL)
worker_count = int_at_least(0, MAX_PARALLEL)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # --log-level, with type=str.upper


def finite_float(text: str) -> float:
    """Any real number: NaN and infinity are refused (they pass float() but poison every computation)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def float_in(low: float, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """A parser for finite numbers in the interval from `low` to `high` (each end closed unless `*_open`)."""
    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    if high == math.inf:
        what = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        what = f"a number in {left}{low:g}, {high:g}{right}"

    def parse(text: str) -> float:
        value = finite_float(text)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


positive_float = float_in(0.0, low_open=True)
nonnegative_float = float_in(0.0)
probability = float_in(0.0, 1.0)  # thresholds, label smoothing
positive_fraction = float_in(0.0, 1.0, low_open=True)  # a weight or an area fraction: 0 would mean nothing
