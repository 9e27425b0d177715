"""Shapes, presets, configs and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch

import xvit_edge
from xvit_edge import PRESETS, XViTConfig, create_model, get_config


def test_create_model_by_name_and_forward_shapes():
    model = xvit_edge.create_model("xvit_test", num_classes=7).eval()
    x = torch.randn(3, 4, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (3, 4, 17, 32)  # 16 patches + class token per frame
    assert model.forward_head(feats).shape == (3, 7)
    torch.testing.assert_close(model(x), model.forward_head(feats))


def test_presets_cover_mobile_small_and_the_papers_vit_b16():
    tiny = get_config("xvit_edge_tiny")
    assert (tiny.embed_dim, tiny.patch_size, tiny.num_frames) == (192, 16, 8) and tiny.img_size <= 160
    assert get_config("xvit_edge_small").embed_dim == 384
    for name, frames in (("xvit_b16_8", 8), ("xvit_b16_16", 16)):
        b16 = get_config(name)
        assert (b16.embed_dim, b16.depth, b16.num_heads, b16.patch_size, b16.img_size, b16.num_frames) == \
            (768, 12, 12, 16, 224, frames)
    assert get_config("xvit_test").depth == 2


def test_config_round_trips_through_a_dict():
    cfg = get_config("xvit_edge_tiny", summary_layers=(3, 7), num_classes=5)
    assert XViTConfig.from_dict(cfg.to_dict()) == cfg
    import json

    assert XViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("kwargs,match", [
    (dict(attention="local"), "attention must be one of"),
    (dict(img_size=30), "multiple of patch_size"),
    (dict(causal=True), "temporal_embed=False"),
    (dict(attention="joint", causal=True, temporal_embed=False), "causal is only defined"),
    (dict(summary_layers=(5,)), "summary_layers"),
    (dict(shift_div=32), "leaves no channel"),
])
def test_invalid_config_says_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_config("xvit_test", **kwargs)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match="xvit_edge_tiny"):
        create_model("xvit_huge")


@pytest.mark.parametrize("shape,match", [
    ((4, 3, 32, 32), r"5-D video batch \(B, 4, 3, 32, 32\).*unsqueeze"),
    ((1, 5, 3, 32, 32), "takes exactly 4 frames, got 5"),
    ((1, 4, 1, 32, 32), "expected 3 channels"),
    ((1, 4, 32, 32, 3), "expected 3 channels"),
    ((1, 4, 3, 48, 48), "32x32 pixels"),
])
def test_bad_input_shape_is_a_clear_value_error(shape, match):
    model = create_model("xvit_test")
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_integer_frames_are_refused():
    with pytest.raises(ValueError, match="preprocessing"):
        create_model("xvit_test")(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))


def test_every_preset_builds_with_the_advertised_parameter_count():
    from xvit_edge.flops import count_params

    assert 5e6 < count_params(PRESETS["xvit_edge_tiny"]) < 7e6  # ViT-Ti: 5.7 M + temporal head
    assert 85e6 < count_params(PRESETS["xvit_b16_8"]) < 95e6  # ViT-B: 86 M + temporal head


def test_temporal_order_changes_the_output_only_with_time_modelling():
    """Reversing the frames changes mixing logits but not those of the frame-averaged baseline."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 32, 32)
    mixing = create_model("xvit_test").eval()
    baseline = create_model(xvit_edge.config.space_only_baseline(mixing.config)).eval()
    with torch.no_grad():
        assert not torch.allclose(mixing(x), mixing(x.flip(1)), atol=1e-4)
        torch.testing.assert_close(baseline(x), baseline(x.flip(1)))
