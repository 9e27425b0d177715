"""Converting a PT2E int8 (QDQ) graph to Core ML without coremltools' wrong fold of quantized scalars.

coremltools 9.0's torch frontend (`converters/mil/frontend/torch/quantization_ops.py`, `_dequantize_general`)
folds a dequantize of a constant scalar as `scale * (input - zero_point)` on the int8 values themselves: the
subtraction wraps, so a scalar stored as 127 with zero point -128 (the attention's query scale, 0.25) becomes
(127 - 128) x scale = -0.00098, silently, in every block. `fixed_scalar_dequantize` wraps that function so such
scalars are folded in float; everything else is left to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


@contextmanager
def fixed_scalar_dequantize() -> Iterator[None]:
    """Within: constant scalar dequantizes fold as float(scale) * (float(q) - float(zero_point))."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import quantization_ops

    original = quantization_ops._dequantize_general

    def patched(context, node, input, scale, zero_point, axis, qmin, qmax):
        if input.rank == 0 and input.val is not None and zero_point.val is not None and scale.val is not None:
            value = np.float32(scale.val) * (np.float32(input.val) - np.float32(zero_point.val))
            context.add(mb.const(val=np.float32(value), name=node.name), node.name)
            return
        original(context, node, input, scale, zero_point, axis, qmin, qmax)

    quantization_ops._dequantize_general = patched
    try:
        yield
    finally:
        quantization_ops._dequantize_general = original
