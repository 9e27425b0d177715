"""The analytic cost model agrees with torch's FLOP counter and shows the paper's linear-in-T claim."""

from __future__ import annotations

import re

import pytest

from xvit_edge import get_config
from xvit_edge.config import causal_variant, space_only_baseline
from xvit_edge.flops import count_macs, count_params, image_model_config, main, measure_flops


@pytest.mark.parametrize("preset", ["xvit_test", "xvit_edge_tiny"])
@pytest.mark.parametrize("variant", ["mixing", "summary", "causal", "space_only", "divided", "joint", "head_depth2"])
def test_analytic_macs_match_torch_flop_counter(preset, variant):
    cfg = get_config(preset)
    cfg = {"mixing": cfg, "summary": cfg.replace(summary_layers=(0, 1)), "causal": causal_variant(cfg),
           "space_only": space_only_baseline(cfg), "divided": cfg.replace(attention="divided"),
           "joint": cfg.replace(attention="joint"), "head_depth2": cfg.replace(head_depth=2)}[variant]
    assert 2 * count_macs(cfg)["total"] == measure_flops(cfg)


@pytest.mark.parametrize("preset", ["xvit_edge_tiny", "xvit_b16_8"])
def test_mixing_cost_is_linear_in_frames_and_equals_the_image_model(preset):
    macs = {t: count_macs(get_config(preset, num_frames=t))["total"] for t in (4, 8, 16, 32)}
    assert macs[16] / macs[8] == pytest.approx(2.0, abs=0.02)
    image = count_macs(image_model_config(get_config(preset)))["total"]
    for t, m in macs.items():
        assert m / (t * image) == pytest.approx(1.0, abs=0.02)
    # Mixing moves channels only: no parameters and no MACs beyond the space-only model with the same head.
    assert macs[8] == count_macs(get_config(preset, attention="space_only"))["total"]
    assert count_params(get_config(preset)) == count_params(get_config(preset, attention="space_only"))


def test_joint_attention_grows_super_linearly():
    joint = {t: count_macs(get_config("xvit_edge_tiny", attention="joint", num_frames=t))["total"] for t in (8, 16, 32)}
    assert joint[16] / joint[8] > 2.5 and joint[32] / joint[16] > joint[16] / joint[8]


def test_vit_b16_matches_the_papers_gflops():
    """Paper: X-ViT-B/16, 3 views: 425 GFLOPs at 8 frames, 850 at 16 (one MAC counted as one FLOP)."""
    for t, paper in ((8, 425), (16, 850)):
        assert 3 * count_macs(get_config("xvit_b16_8", num_frames=t))["total"] / 1e9 == pytest.approx(paper, rel=0.01)


def test_cli_prints_the_table(capsys):
    assert main(["--preset", "xvit_test", "--frames", "4", "8", "--verify"]) == 0
    out = capsys.readouterr().out
    ratio = float(re.search(r"mixing\(T=8\) / mixing\(T=4\) = ([0-9.]+)", out).group(1))
    assert ratio == pytest.approx(2.0, abs=0.02)
    assert "joint" in out and "flop_counter" in out
