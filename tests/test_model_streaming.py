"""Whole clip == frame by frame for the causal model, in eager and through torch.export."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from xvit_edge import create_model, get_config
from xvit_edge.config import causal_variant
from xvit_edge.model.streaming import StreamingStep, StreamState


def causal_model(**kw):
    torch.manual_seed(0)
    model = create_model(causal_variant(get_config("xvit_test", **kw))).eval()
    with torch.no_grad():
        model.head.cls_token.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("layout,shift_div", [("per_head", 4), ("global", 8)])
def test_frame_by_frame_equals_whole_clip(layout, shift_div):
    model = causal_model(mix_layout=layout, shift_div=shift_div, num_frames=6)
    clip = torch.randn(2, 6, 3, 32, 32)
    step = StreamingStep(model)
    with torch.no_grad():
        logits, state = step.run(clip)
        assert_close(logits[-1], model(clip), rtol=1e-5, atol=1e-5)
        # every frame's class token equals the clip's, so the temporal head sees the same sequence
        assert_close(state.frame_tokens, model.forward_features(clip)[:, :, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout,shift_div", [("per_head", 4), ("global", 8)])
def test_stream_longer_than_the_clip_keeps_its_history(layout, shift_div):
    """Past T frames the rolling state must still be exact: each frame's class token equals the one the
    backbone computes over the whole stream at once (causal mixing never looks ahead, so no later frame
    changes it)."""
    model = causal_model(mix_layout=layout, shift_div=shift_div, num_frames=4)
    frames = torch.randn(2, 9, 3, 32, 32)
    with torch.no_grad():
        _, state = StreamingStep(model).run(frames)
        x = model.embed(frames)  # the backbone over all 9 frames, bypassing the 4-frame input check
        for blk in model.blocks:
            x = blk(x)
        tokens = model.norm(x)[:, :, 0]
    assert_close(state.frame_tokens, tokens[:, -4:], rtol=1e-5, atol=1e-5)


def test_state_shapes_come_from_the_config():
    cfg = causal_variant(get_config("xvit_edge_tiny"))
    shapes = StreamState.shapes(cfg, batch=1)
    # per head (3 heads of 64 channels), two borrowed groups of 64 // 4 channels: 96 of 192 kept per frame
    assert shapes == {"keys": [12, 1, 2, 101, 96], "values": [12, 1, 2, 101, 96], "frame_tokens": [1, 8, 192]}
    global_cfg = cfg.replace(mix_layout="global", shift_div=8)
    assert StreamState.shapes(global_cfg)["keys"] == [12, 1, 2, 101, 48]


def test_streaming_refuses_a_non_causal_model():
    with pytest.raises(ValueError, match="causal mixing model"):
        StreamingStep(create_model("xvit_test"))


def test_exported_step_matches_eager_over_a_stream():
    model = causal_model()
    step = StreamingStep(model).eval()
    state = StreamState.zeros(model.config).as_tuple()
    frame = torch.randn(1, 3, 32, 32)
    program = torch.export.export(step, (frame, *state))
    exported = program.module()
    frames = torch.randn(1, 7, 3, 32, 32)
    carry_e, carry_x = state, state
    with torch.no_grad():
        for t in range(7):
            out_e, *carry_e = step(frames[:, t], *carry_e)
            out_x, *carry_x = exported(frames[:, t], *carry_x)
            assert_close(out_x, out_e)
    for a, b in zip(carry_x, carry_e):
        assert_close(a, b)


@pytest.mark.parametrize("runtime", ["executorch", "onnx"])
def test_step_on_device_runtimes_matches_the_whole_clip(runtime, tmp_path):
    """The exported step, run frame by frame with its state fed back, ends at the clip's logits."""
    from xvit_edge.export.executorch import export_pte, run_pte
    from xvit_edge.export.onnx import export_onnx, run_onnx

    model = causal_model()
    step = StreamingStep(model).eval()
    state = StreamState.zeros(model.config).as_tuple()
    clip = torch.randn(1, 4, 3, 32, 32)
    names = ["frame", "keys", "values", "frame_tokens"]
    path = tmp_path / ("step.pte" if runtime == "executorch" else "step.onnx")
    with torch.no_grad():
        if runtime == "executorch":
            assert not export_pte(step, (clip[:, 0], *state), path)["heavy_ops_not_delegated"]
            run = run_pte
        else:
            export_onnx(step, (clip[:, 0], *state), path, {}, names, ["logits"] + [n + "_out" for n in names[1:]])
            run = run_onnx
        carry = list(state)
        for t in range(4):
            logits, *carry = run(path, [(clip[:, t], *carry)])[0]
        assert_close(logits, model(clip), rtol=1e-4, atol=1e-4)
