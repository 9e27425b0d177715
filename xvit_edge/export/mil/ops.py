"""The MIL ops our exports emit, in numpy. Each takes the op's inputs by their MIL names (constants as
numpy values) and returns its output(s) in float32 (or the integer/str type the op makes); the program
rounds each output to its declared dtype (see `program`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import erf


class UnsupportedOpError(ValueError):
    """An op the evaluator does not know: the program is refused by name, never evaluated in part."""


def _f(x: Any) -> np.ndarray:
    return np.asarray(x, np.float32)


def _conv(x, weight, bias=None, strides=(1, 1), pad_type="valid", pad=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    x, w = _f(x), _f(weight)
    if pad_type == "custom":
        x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])))
    elif pad_type != "valid":
        raise UnsupportedOpError(f"conv with pad_type {pad_type!r}")
    (sh, sw), (dh, dw), g = strides, dilations, int(groups)
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw)
    n, c, ho, wo = windows.shape[:4]
    out = []
    for i in range(g):  # each group's output channels see only that group's input channels
        wi = w[i * w.shape[0] // g:(i + 1) * w.shape[0] // g]
        xi = windows[:, i * c // g:(i + 1) * c // g]
        out.append(np.einsum("nchwij,ocij->nohw", xi, wi, optimize=True))
    y = np.concatenate(out, axis=1)
    return y if bias is None else y + _f(bias).reshape(1, -1, 1, 1)


def _slice(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    index = []
    for i in range(x.ndim):
        b = None if begin_mask is not None and begin_mask[i] else int(begin[i])
        e = None if end_mask is not None and end_mask[i] else int(end[i])
        s = 1 if stride is None else int(stride[i])
        if squeeze_mask is not None and squeeze_mask[i]:
            index.append(b if b is not None else 0)
        else:
            index.append(slice(b, e, s))
    return x[tuple(index)]


def _pad(x, pad, mode="constant", constant_val=0.0):
    if mode != "constant":
        raise UnsupportedOpError(f"pad with mode {mode!r}")
    x = np.asarray(x)
    pairs = np.asarray(pad).reshape(-1, 2)  # (before, after) for the last len(pad) / 2 dims
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(int(v) for v in p) for p in pairs]
    return np.pad(x, widths, constant_values=constant_val)


def _layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    axes = tuple(int(a) for a in np.atleast_1d(axes))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float32(epsilon))
    return y * (1 if gamma is None else _f(gamma)) + (0 if beta is None else _f(beta))


def _gelu(x, mode="EXACT"):
    x = _f(x)
    if mode == "EXACT":
        return _f(0.5 * x * (1 + erf(x / np.float32(np.sqrt(2)))))
    if mode == "TANH_APPROXIMATION":
        return _f(0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x ** 3))))
    if mode == "SIGMOID_APPROXIMATION":
        return _f(x / (1 + np.exp(np.float32(-1.702) * x)))
    raise UnsupportedOpError(f"gelu with mode {mode!r}")


def _softmax(x, axis=-1):
    x = _f(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = _f(x), _f(y)
    return np.matmul(np.swapaxes(x, -1, -2) if transpose_x else x, np.swapaxes(y, -1, -2) if transpose_y else y)


def _affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS 16/17 int8 weights: (q - zero_point) * scale per channel along `axis`, in float32 (an int8
    subtraction would wrap)."""
    q = np.asarray(quantized_data, np.float32)
    shape = [1] * q.ndim
    shape[int(axis)] = -1
    zp, s = np.asarray(zero_point, np.float32), _f(scale)
    return (q - (zp.reshape(shape) if zp.ndim else zp)) * (s.reshape(shape) if s.ndim else s)


def _blockwise_shift_scale(data, scale, offset=None):
    """iOS 18 int8 weights: (data - offset) * scale, each scale entry covering a block of `data`."""
    q = np.asarray(data, np.float32)

    def expand(v):
        v = np.asarray(v, np.float32)
        for axis, (n, m) in enumerate(zip(q.shape, v.shape)):
            v = np.repeat(v, n // m, axis=axis)
        return v

    return (q - (0 if offset is None else expand(offset))) * expand(scale)


def _quantize(input, scale, zero_point=None, axis=None, output_dtype="int8"):
    lo, hi, dtype = (-128, 127, np.int8) if output_dtype == "int8" else (0, 255, np.uint8)
    x, s = _f(input), _f(scale)
    zp = np.zeros_like(s) if zero_point is None else np.asarray(zero_point, np.float32)
    if axis is not None and s.ndim:
        shape = [1] * x.ndim
        shape[int(axis)] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    return np.clip(np.round(x / s) + zp, lo, hi).astype(dtype)


def _dequantize(input, scale, zero_point=None, axis=None):
    x, s = np.asarray(input, np.float32), _f(scale)
    zp = np.zeros_like(s) if zero_point is None else np.asarray(zero_point, np.float32)
    if axis is not None and s.ndim:
        shape = [1] * x.ndim
        shape[int(axis)] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    return (x - zp) * s


def _classify(probabilities, classes):
    """Core ML's classifier output: the top class's label, and the scores (here as the array, label order)."""
    scores = _f(probabilities)
    labels = list(np.asarray(classes).tolist())
    return str(labels[int(scores.reshape(-1).argmax())]), scores


def _split(x, axis, num_splits=None, split_sizes=None):
    x = np.asarray(x)
    if split_sizes is not None:
        return tuple(np.split(x, np.cumsum(split_sizes)[:-1], axis=int(axis)))
    return tuple(np.split(x, int(num_splits), axis=int(axis)))


def _concat(values, axis, interleave=False):
    if interleave:
        raise UnsupportedOpError("concat with interleave")
    return np.concatenate([np.asarray(v, np.float32) for v in values], axis=int(axis))


def _squeeze(x, axes=None):
    return np.squeeze(np.asarray(x), axis=None if axes is None else tuple(int(a) for a in axes))


def _reduce(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def reduce(x, axes=None, keep_dims=False):
        return fn(_f(x), axis=None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)),
                  keepdims=bool(keep_dims))

    return reduce


OPS: dict[str, Callable[..., Any]] = {
    "add": lambda x, y: _f(x) + _f(y),
    "sub": lambda x, y: _f(x) - _f(y),
    "mul": lambda x, y: _f(x) * _f(y),
    "real_div": lambda x, y: _f(x) / _f(y),
    "cast": lambda x, dtype: np.asarray(x),  # the program rounds the output to the dtype it declares
    "reshape": lambda x, shape: np.reshape(np.asarray(x), [int(s) for s in shape]),
    "transpose": lambda x, perm: np.transpose(np.asarray(x), [int(p) for p in perm]),
    "expand_dims": lambda x, axes: np.expand_dims(np.asarray(x), tuple(int(a) for a in axes)),
    "squeeze": _squeeze,
    "concat": _concat,
    "stack": lambda values, axis: np.stack([np.asarray(v, np.float32) for v in values], axis=int(axis)),
    "split": _split,
    "slice_by_index": _slice,
    "pad": _pad,
    "conv": _conv,
    "linear": lambda x, weight, bias=None: _f(x) @ _f(weight).T + (0 if bias is None else _f(bias)),
    "matmul": _matmul,
    "layer_norm": _layer_norm,
    "gelu": _gelu,
    "softmax": _softmax,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "classify": _classify,
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
    "quantize": _quantize,
    "dequantize": _dequantize,
    "read_state": lambda input: np.array(input),
    "coreml_update_state": None,  # handled by the program: it writes the state it names
}
