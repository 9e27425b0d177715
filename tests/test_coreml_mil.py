"""The numpy evaluator of saved Core ML programs (`xvit_edge.export.mil`) against torch.

Op by op: tiny one-op functions, converted by coremltools (one program per precision holds them all, each
case its own input and output), saved, read back and evaluated; fp32 programs tight, fp16 programs by the
stated rule (float32 compute, every op's output rounded to fp16). Whole models: the test preset exported
as the clip classifier (fp32, fp16, weight-only int8) and as the stateful streaming step (Core ML states,
carried in place frame after frame), against the eager model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
import torch.nn.functional as F
from torch import nn

from xvit_edge import create_model
from xvit_edge.export.coreml import export_mlpackage
from xvit_edge.export.mil import MILProgram, UnsupportedOpError
from xvit_edge.export.mil import ops as mil_ops
from xvit_edge.export.stream import STATE_NAMES, StatefulStep, sample_streams
from xvit_edge.export.verify import sample_inputs, sqnr_db
from xvit_edge.model.streaming import StreamingStep, StreamState

LABELS = [f"action_{i}" for i in range(10)]
META = {"description": "evaluator test"}


def _qdq(x: torch.Tensor) -> torch.Tensor:
    """Activation quantize/dequantize, as a PT2E-converted int8 graph has them."""
    q = torch.ops.quantized_decomposed.quantize_per_tensor(x, 0.02, 3, -128, 127, torch.int8)
    return torch.ops.quantized_decomposed.dequantize_per_tensor(q, 0.02, 3, -128, 127, torch.int8)


g = torch.Generator().manual_seed(0)
W = torch.randn(24, 16, generator=g) / 4
# name -> (function of the input and the parameters, input shape, parameters)
CASES = {
    "linear": (lambda x, w: F.linear(x, w, torch.arange(24.0) / 10), (2, 5, 16), (W,)),
    "conv": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), (1, 3, 9, 9), (torch.randn(8, 3, 3, 3, generator=g),)),
    "conv_patches": (lambda x, w: F.conv2d(x, w, stride=4), (1, 3, 16, 16), (torch.randn(6, 3, 4, 4, generator=g),)),
    "matmul": (lambda x: x @ x.transpose(-1, -2) / 4, (2, 3, 5, 8), ()),
    "layer_norm": (lambda x, w: F.layer_norm(x, (16,), w[0], w[1], eps=1e-6), (2, 7, 16), (W[:2],)),
    "gelu": (lambda x: F.gelu(x * 3), (4, 32), ()),
    "softmax": (lambda x: torch.softmax(x * 2, dim=-1), (3, 4, 9), ()),
    "add_mul_sub_div": (lambda x: (x + 1.5) * x - x / (x * x + 1), (3, 8), ()),
    "cat_pad": (lambda x: F.pad(torch.cat([x, x * 2], dim=1), (1, 2)), (2, 3, 5), ()),
    "reshape_permute": (lambda x: x.reshape(2, 6, 5).permute(2, 0, 1) + 0, (4, 3, 5), ()),
    "slice_select": (lambda x: x[:, 1:5:2, 2] * x[:, -1:, 0], (3, 7, 4), ()),
    "mean": (lambda x: x.mean(dim=(1, 2), keepdim=True) - x.sum(dim=-1, keepdim=True), (2, 3, 5), ()),
    "stack_unsqueeze": (lambda x: torch.stack([x, -x], dim=1).unsqueeze(0) * 1.0, (3, 4), ()),
    "split_squeeze": (lambda x: torch.cat([a.squeeze(1) * (i + 1) for i, a in enumerate(x.split([1, 1, 2], 1)[:2])],
                                          -1), (2, 4, 5), ()),
    "chunk_stack": (lambda x: torch.stack(x.chunk(2, dim=-1), 0) * 2, (3, 8), ()),
    "quantize_dequantize": (_qdq, (4, 6), ()),
}


class OneOpEach(nn.Module):
    """Every case at once: input i goes through case i only, output i is its result."""

    def __init__(self) -> None:
        super().__init__()
        self.fns = [fn for fn, _, _ in CASES.values()]
        self.counts = [len(params) for _, _, params in CASES.values()]
        self.params = nn.ParameterList([nn.Parameter(p, requires_grad=False)
                                        for _, _, params in CASES.values() for p in params])

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs, start = [], 0
        for fn, x, count in zip(self.fns, xs, self.counts):
            outs.append(fn(x, *self.params[start:start + count]))
            start += count
        return tuple(outs)


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def one_op_each(request, tmp_path_factory):
    """(precision, the saved program evaluated on seeded inputs, torch's outputs, the program)."""
    import coremltools as ct

    precision = request.param
    module = OneOpEach().eval()
    xs = tuple(torch.randn(shape, generator=torch.Generator().manual_seed(i))
               for i, (_, shape, _) in enumerate(CASES.values()))
    program = torch.export.export(module, xs).run_decompositions({})
    path = tmp_path_factory.mktemp("ops") / f"ops_{precision}.mlpackage"
    ct.convert(program, inputs=[ct.TensorType(name=f"x_{n}", shape=tuple(x.shape), dtype=np.float32)
                                for n, x in zip(CASES, xs)],
               outputs=[ct.TensorType(name=n) for n in CASES], minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
               ).save(str(path))
    mil = MILProgram.load(path)
    got = mil.predict({f"x_{n}": x.numpy() for n, x in zip(CASES, xs)})
    with torch.no_grad():
        want = dict(zip(CASES, module(*xs)))
    return precision, got, want, mil


@pytest.mark.parametrize("name", list(CASES))
def test_each_op_matches_torch(one_op_each, name):
    precision, got, want, program = one_op_each
    assert program.precision == precision
    y = np.asarray(got[name]).astype(np.float32)  # an fp16 program's outputs are fp16 unless declared fp32
    if precision == "fp32":
        torch.testing.assert_close(torch.from_numpy(y), want[name], rtol=1e-5, atol=1e-5)
    else:  # every op's output rounded to fp16: a few fp16 ulps of the result's scale
        np.testing.assert_array_equal(y, y.astype(np.float16).astype(np.float32))
        torch.testing.assert_close(torch.from_numpy(y), want[name], rtol=1e-2,
                                   atol=1e-2 * float(want[name].abs().max()))


def test_the_op_cases_cover_the_ops_of_our_exports(one_op_each):
    """The ops of the real exports that the cases above reach (classify, the int8 weight ops and the
    state ops are exercised by the whole-model tests below)."""
    precision, _, _, program = one_op_each
    kinds = {op.op_type for op in program.function.operations}
    expected = {"conv", "linear", "matmul", "layer_norm", "gelu", "softmax", "add", "sub", "mul", "real_div",
                "concat", "pad", "reshape", "slice_by_index", "transpose", "const", "expand_dims", "squeeze",
                "stack", "split", "reduce_mean", "quantize", "dequantize"}
    assert expected | ({"cast"} if precision == "fp16" else set()) <= kinds, sorted(expected - kinds)


def test_gelu_approximations_match_torch():
    """coremltools 9.0 converts the tanh-approximate GELU of a torch.export program to an EXACT gelu op (it
    reads `approximate` from the positional inputs only; seen: 4.4e-4 from torch's tanh GELU on inputs of
    +-8), so the approximate modes are checked at the op level."""
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(torch.from_numpy(mil_ops.OPS["gelu"](x.numpy(), "TANH_APPROXIMATION")),
                               F.gelu(x, approximate="tanh"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(mil_ops.OPS["gelu"](x.numpy(), "EXACT")), F.gelu(x),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(mil_ops.OPS["gelu"](x.numpy(), "SIGMOID_APPROXIMATION")),
                               x * torch.sigmoid(1.702 * x), rtol=1e-5, atol=1e-5)


def test_int8_weight_ops_dequantize_in_float():
    """(q - zero point) * scale in float: an int8 subtraction would wrap (127 - (-128) is not -1)."""
    q = np.array([[127, -128], [5, 0]], np.int8)
    zero_point, scale = np.array([-128, 0], np.int8), np.array([0.5, 2.0], np.float32)
    out = mil_ops.OPS["constexpr_affine_dequantize"](q, zero_point, scale, 0)
    np.testing.assert_array_equal(out, [[127.5, 0.0], [10.0, 0.0]])
    out = mil_ops.OPS["constexpr_blockwise_shift_scale"](q, np.array([[0.5], [2.0]], np.float32))
    np.testing.assert_array_equal(out, [[63.5, -64.0], [10.0, 0.0]])
    out = mil_ops.OPS["dequantize"](q, np.float32(0.25), np.int8(-128))
    np.testing.assert_array_equal(out, [[63.75, 0.0], [33.25, 32.0]])


def test_an_unknown_op_is_refused_by_name(one_op_each, monkeypatch):
    precision, _, _, program = one_op_each
    monkeypatch.delitem(mil_ops.OPS, "gelu")
    inputs = {f"x_{n}": np.zeros(shape, np.float32) for n, (_, shape, _) in CASES.items()}
    with pytest.raises(UnsupportedOpError, match=r"no op 'gelu' \(output '.+'\)"):
        program.predict(inputs)


@pytest.fixture(scope="module")
def clip_model():
    """The test preset, its zero-initialised parts moved off zero and its classifier scaled so the logits
    are O(1) (a fresh head's are ~1e-3, under any absolute bound)."""
    torch.manual_seed(0)
    m = create_model("xvit_test", summary_layers=(1,)).eval()
    with torch.no_grad():
        m.temporal_embed.normal_(0, 0.1)
        m.head.cls_token.normal_(0, 0.1)
        m.head.fc2.weight.normal_(0, 1.0)
    return m


# precision -> (computes in, a weight op it must hold, assert_close atol as a fraction of the largest logit,
# least SQNR in dB); the bounds sit below what was measured (see the test).
CLIP_BARS = {"fp32": ("fp32", None, None, None), "fp16": ("fp16", None, 5e-3, 55.0),
             "int8": ("fp16", "constexpr_affine_dequantize", 3e-2, 38.0)}


@pytest.mark.parametrize("precision", list(CLIP_BARS))
def test_clip_classifier_matches_eager(clip_model, tmp_path, precision):
    """The clip export (a classifier: `classLabel` and the per-class scores). Measured on 8 clips (logits
    up to ~0.8): fp32 max abs diff 1.8e-7; fp16 64 dB SQNR, max abs diff 7e-4 of the largest logit; weight-only
    int8 45 dB, 4.5e-3 of it."""
    computes, weight_op, rel_atol, min_sqnr = CLIP_BARS[precision]
    clips = sample_inputs(clip_model.config, 2, seed=3)
    path = tmp_path / f"clip_{precision}.mlpackage"
    export_mlpackage(clip_model, clips[0], path, LABELS, precision, META)
    program = MILProgram.load(path)
    assert program.input_names == ["video"] and program.state_names == [] and program.precision == computes
    assert weight_op is None or weight_op in {op.op_type for op in program.function.operations}
    scores_name = next(n for n in program.output_names if n != "classLabel")
    got = []
    for x in clips:
        out = program.predict({"video": x.numpy()})
        scores = np.asarray(out[scores_name])
        assert scores.shape == (1, len(LABELS)) and out["classLabel"] == LABELS[int(scores.argmax())]
        got.append(torch.from_numpy(scores.astype(np.float32)))
    with torch.no_grad():
        want = torch.cat([clip_model(x) for x in clips])
    got = torch.cat(got)
    if precision == "fp32":
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=rel_atol * float(want.abs().max()))
        assert sqnr_db(want, got) >= min_sqnr
    assert torch.equal(got.argmax(-1), want.argmax(-1))


# precision -> (assert_close atol on the logits, on the state; both as a fraction of the tensor's largest
# value), from measurement on xvit_test's causal variant over T + 3 frames (see the test).
STREAM_BARS = {"fp16": (5e-3, 5e-3), "int8": (3e-2, 3e-2)}


@pytest.mark.parametrize("precision", list(STREAM_BARS))
def test_stateful_step_streams_like_the_eager_step(causal_test_model, tmp_path, precision):
    """The streaming step with its state in Core ML states (fp16, iOS 18; int8 takes the iOS 18 blockwise
    weight op): T + 3 frames, the state updated in place by each prediction, against the eager step with its
    explicit state, after every frame. Measured over 4 streams: fp16 67 dB SQNR on the logits (max abs diff
    7e-4 of the largest logit, state 1.2e-3 of its largest value); int8 46 dB (5.9e-3, state 8.1e-3)."""
    model, cfg = causal_test_model, causal_test_model.config
    frames = sample_streams(cfg, 1, seed=5)[0]
    path = tmp_path / f"step_{precision}.mlpackage"
    export_mlpackage(StatefulStep(model).eval(), (frames[:, 0],), path, LABELS, precision, META, ("frame",),
                     ("logits",), STATE_NAMES)
    program = MILProgram.load(path)
    assert (program.input_names, program.output_names) == (["frame"], ["logits"])
    assert program.state_names == list(STATE_NAMES) and program.precision == "fp16"
    kinds = {op.op_type for op in program.function.operations}
    assert {"read_state", "coreml_update_state"} <= kinds
    assert precision != "int8" or "constexpr_blockwise_shift_scale" in kinds
    state = program.make_state()
    held = dict(state)
    assert all(v.dtype == np.float16 and not v.any() for v in state.values())
    step, eager = StreamingStep(model).eval(), StreamState.zeros(cfg).as_tuple()
    logit_tol, state_tol = STREAM_BARS[precision]
    got, want = [], []
    for t in range(frames.shape[1]):
        got.append(torch.from_numpy(np.asarray(program.predict({"frame": frames[:, t].numpy()}, state)["logits"],
                                               np.float32)))
        with torch.no_grad():
            logits, *eager = step(frames[:, t], *eager)
        want.append(logits)
        torch.testing.assert_close(got[-1], logits, rtol=0, atol=logit_tol * float(logits.abs().max()))
    assert all(state[n] is held[n] for n in STATE_NAMES)  # updated in place, as Core ML's MLState
    for name, expected in zip(STATE_NAMES, eager):
        torch.testing.assert_close(torch.from_numpy(state[name].astype(np.float32)), expected, rtol=0,
                                   atol=state_tol * float(expected.abs().max()))
    assert torch.equal(torch.cat(got).argmax(-1), torch.cat(want).argmax(-1))
    # A fresh state starts the stream over.
    first = program.predict({"frame": frames[:, 0].numpy()}, program.make_state())["logits"]
    torch.testing.assert_close(torch.from_numpy(np.asarray(first, np.float32)), got[0], rtol=0, atol=0)
