"""Keeping the export toolchains' own output off the terminal.

coremltools, torch.onnx, torchao and ExecuTorch print progress bars, deprecation notices and CPU-probe lines
of their own (20-28 lines an export), some from C++ straight to the file descriptors, where Python's
`warnings` and `logging` cannot stop them. `captured_output` sends file descriptors 1 and 2 to a temporary
file while the work runs and hands the caller a stream to the real terminal for its own progress. With
`verbose` (the CLIs' `--verbose`) nothing is captured: that is how to see the toolchain's own words when an
export fails.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# Loggers of the toolchains that warn on every conversion.
NOISY_LOGGERS = ("coremltools", "torch.onnx", "torch._export", "torch.export", "torchao", "executorch",
                 "torch.utils._pytree", "onnxscript", "onnx_ir")


@contextmanager
def quiet_toolchains(verbose: bool = False) -> Iterator[None]:
    """The toolchains' Python warnings and log lines (`NOISY_LOGGERS`) off, unless `verbose`; unlike
    `captured_output` the terminal stays ours, for commands whose own progress bars run throughout."""
    if verbose:
        yield
        return
    with warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        yield


@contextmanager
def captured_output(verbose: bool = False) -> Iterator[TextIO]:
    """Run the body with stdout/stderr captured at the file-descriptor level; yields the real terminal."""
    if verbose:
        yield sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except (OSError, io.UnsupportedOperation):  # no real descriptors (an embedding host): leave output alone
        yield sys.stderr
        return
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            with warnings.catch_warnings(), _quiet_loggers():
                warnings.simplefilter("ignore")
                yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


@contextmanager
def _quiet_loggers() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
