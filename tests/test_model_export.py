"""Every preset and on-device attention exports with torch.export as one graph of plain, static-shape ops."""

from __future__ import annotations

import pytest
import torch

from xvit_edge import PRESETS, create_model, get_config
from xvit_edge.config import causal_variant, space_only_baseline

# Ops that would break the "plain tensor ops" contract: wrap-around shifts, index writes, data-dependent shapes.
FORBIDDEN = ("aten.roll", "aten.index_put", "aten.nonzero", "aten.index.", "aten.masked_", "aten.scatter",
             "aten._local_scalar_dense", "aten.item", "aten.where", "aten.full_like")


def on_device_variants(preset: str):
    cfg = get_config(preset)
    return {"mixing": cfg, "mixing_causal": causal_variant(cfg), "space_only": space_only_baseline(cfg),
            "mixing_summary": cfg.replace(summary_layers=tuple(range(cfg.depth)))}


CASES = [(p, v) for p in PRESETS for v in on_device_variants("xvit_test")]


@pytest.mark.parametrize("preset,variant", CASES)
def test_export_every_preset_and_variant(preset, variant):
    cfg = on_device_variants(preset)[variant]
    # Tracing only needs shapes: build big presets on the meta device (no weights, no compute).
    with torch.device("meta"):
        model = create_model(cfg).eval()
        x = torch.empty(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
    ep = torch.export.export(model, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if t.startswith(FORBIDDEN)]
    assert not [t for t in targets if t.split(".")[1].endswith("_") and not t.split(".")[1].startswith("_")]
    out = [n for n in ep.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    assert tuple(out.shape) == (1, cfg.num_classes)


@pytest.mark.parametrize("attention", ["mixing", "space_only", "divided", "joint"])
def test_no_graph_breaks_and_exported_matches_eager(attention):
    model = create_model("xvit_test", attention=attention, summary_layers=(1,) if attention == "mixing" else ()).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    ep = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x))
