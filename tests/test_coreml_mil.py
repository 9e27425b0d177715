"""The numpy evaluator of saved Core ML programs (`xvit_edge.export.mil`), op by op against torch: each tiny
module is converted by coremltools, saved, read back and evaluated. fp32 programs tight; fp16 programs by
the stated rule (float32 compute, every op's output rounded to fp16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xvit_edge.export.mil import MILProgram, UnsupportedOpError
from xvit_edge.export.mil import ops as mil_ops


class Lambda(nn.Module):
    def __init__(self, fn, *params: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList([nn.Parameter(p, requires_grad=False) for p in params])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.params)


def _save(module: nn.Module, example: torch.Tensor, path, precision: str = "fp32"):
    import coremltools as ct

    program = torch.export.export(module.eval(), (example,)).run_decompositions({})
    mlmodel = ct.convert(program, inputs=[ct.TensorType(name="x", shape=tuple(example.shape), dtype=np.float32)],
                         outputs=[ct.TensorType(name="y")], minimum_deployment_target=ct.target.iOS17,
                         compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
    mlmodel.save(str(path))
    return MILProgram.load(path)


g = torch.Generator().manual_seed(0)
W = torch.randn(24, 16, generator=g) / 4
CASES = {
    "linear": (lambda x, w: F.linear(x, w, torch.arange(24.0) / 10), (2, 5, 16), (W,)),
    "conv": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), (1, 3, 9, 9), (torch.randn(8, 3, 3, 3, generator=g),)),
    "conv_patches": (lambda x, w: F.conv2d(x, w, stride=4), (1, 3, 16, 16), (torch.randn(6, 3, 4, 4, generator=g),)),
    "matmul": (lambda x: x @ x.transpose(-1, -2) / 4, (2, 3, 5, 8), ()),
    "layer_norm": (lambda x, w: F.layer_norm(x, (16,), w[0], w[1], eps=1e-6), (2, 7, 16), (W[:2],)),
    "gelu": (lambda x: F.gelu(x * 3), (4, 32), ()),
    "softmax": (lambda x: torch.softmax(x * 2, dim=-1), (3, 4, 9), ()),
    "add_mul_sub_div": (lambda x: (x + 1.5) * x - x / 3, (3, 8), ()),
    "cat_pad": (lambda x: F.pad(torch.cat([x, x * 2], dim=1), (1, 2)), (2, 3, 5), ()),
    "reshape_permute": (lambda x: x.reshape(2, 6, 5).permute(2, 0, 1) + 0, (4, 3, 5), ()),
    "slice_select": (lambda x: x[:, 1:5:2, 2] * x[:, -1:, 0], (3, 7, 4), ()),
    "mean": (lambda x: x.mean(dim=(1, 2), keepdim=True) - x.sum(dim=-1, keepdim=True), (2, 3, 5), ()),
    "stack_unsqueeze": (lambda x: torch.stack([x, -x], dim=1).unsqueeze(0) * 1.0, (3, 4), ()),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_each_op_matches_torch(tmp_path, name, precision):
    fn, shape, params = CASES[name]
    module = Lambda(fn, *params)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    program = _save(module, x, tmp_path / f"{name}.mlpackage", precision)
    assert program.precision == precision
    got = torch.from_numpy(np.asarray(program.predict({"x": x.numpy()})["y"], np.float32))
    with torch.no_grad():
        want = module(x)
    if precision == "fp32":
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:  # every op's output rounded to fp16: a few fp16 ulps of the result's scale
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))


def test_gelu_approximations_match_torch():
    """coremltools 9.0 converts torch's tanh-approximate GELU to an EXACT gelu op (seen: 4.7e-4 from torch's
    tanh GELU on inputs of +-9), so the approximate modes are checked at the op level."""
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(torch.from_numpy(mil_ops.OPS["gelu"](x.numpy(), "TANH_APPROXIMATION")),
                               F.gelu(x, approximate="tanh"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(mil_ops.OPS["gelu"](x.numpy(), "EXACT")), F.gelu(x),
                               rtol=1e-5, atol=1e-5)


def test_int8_weight_ops_dequantize_in_float(tmp_path):
    """(q - zero point) * scale in float: an int8 subtraction would wrap (127 - (-128) is not -1)."""
    q = np.array([[127, -128], [5, 0]], np.int8)
    out = mil_ops.OPS["constexpr_affine_dequantize"](q, np.array([-128, 0], np.int8), np.array([0.5, 2.0], np.float32), 0)
    np.testing.assert_array_equal(out, [[127.5, 0.0], [10.0, 0.0]])
    out = mil_ops.OPS["constexpr_blockwise_shift_scale"](q, np.array([[0.5], [2.0]], np.float32))
    np.testing.assert_array_equal(out, [[63.5, -64.0], [10.0, 0.0]])


def test_an_unknown_op_is_refused_by_name(tmp_path, monkeypatch):
    fn, shape, params = CASES["gelu"]
    x = torch.randn(shape)
    program = _save(Lambda(fn, *params), x, tmp_path / "gelu.mlpackage")
    monkeypatch.delitem(mil_ops.OPS, "gelu")
    with pytest.raises(UnsupportedOpError, match=r"no op 'gelu' \(output '.*'\)"):
        program.predict({"x": x.numpy()})
