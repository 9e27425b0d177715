"""LayerNorm written as ops the XNNPACK delegate takes, for ExecuTorch export only.

No XNNPACK partitioner of executorch 1.5 takes `native_layer_norm`, so every LayerNorm ran in ExecuTorch's
portable kernels and cut the delegated graph in two: `xvit_edge_tiny` lowered to 29 XNNPACK subgraphs, with
each tensor leaving and re-entering the delegate at every norm. Written as mean, subtract, multiply, rsqrt
and add, the whole transformer is one delegated subgraph (3 in all: the class-token expand and the output
select stay outside), and the fp32 `.pte` got faster (`python -m xvit_edge.bench`, deployment section).

XNNPACK's only mean is a global average pool: a 4-D tensor averaged over its two innermost dimensions
(`MeanDimConfig`). The tokens are viewed as `(1, tokens, 1, channels)`: the pool then runs with one "channel"
per token, vectorised across tokens in XNNPACK's channels-last layout. (Viewed as `(tokens, 1, 1, channels)`
it runs one token at a time and was slower than the portable kernel.)

Eager PyTorch keeps `nn.LayerNorm` (one fused kernel); only the exported program is rewritten, through a
decomposition of `aten.layer_norm`, so float graphs and quantized (PT2E) graphs take the same path. The result
equals `F.layer_norm` within fp32 rounding (tests/test_layer_norm.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

aten = torch.ops.aten


def xnnpack_layer_norm(x: torch.Tensor, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
                       bias: torch.Tensor | None = None, eps: float = 1e-5, cudnn_enable: bool = False,
                       ) -> torch.Tensor:
    """`F.layer_norm(x, normalized_shape, weight, bias, eps)` over the last dimension, as XNNPACK ops: the
    signature of `aten.layer_norm.default`, which it replaces."""
    if len(normalized_shape) != 1:
        raise ValueError(f"only a LayerNorm over the last dimension is rewritten, got {list(normalized_shape)}")
    shape = x.shape
    tokens = x.reshape(1, -1, 1, shape[-1])
    mean = aten.mean.dim(tokens, [2, 3], True)
    centred = tokens - mean
    var = aten.mean.dim(centred * centred, [2, 3], True)
    y = (centred * torch.rsqrt(var + eps)).reshape(shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def decompose_layer_norm(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """`program` with every `aten.layer_norm` replaced by `xnnpack_layer_norm`; nothing else decomposed."""
    return program.run_decompositions({aten.layer_norm.default: xnnpack_layer_norm})
