"""LayerNorm as XNNPACK ops (`xvit_edge.export.layer_norm`): equal to F.layer_norm, and inside the delegate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xvit_edge import create_model
from xvit_edge.export.layer_norm import decompose_layer_norm, xnnpack_layer_norm


@pytest.mark.parametrize("shape", [(2, 17, 32), (1, 4, 65, 64), (3, 192)])
def test_equals_f_layer_norm(shape):
    g = torch.Generator().manual_seed(0)
    # An offset and a spread far from 0 and 1: the two-pass variance must not lose them.
    x = torch.randn(*shape, generator=g) * 7 + 3
    weight, bias = torch.randn(shape[-1], generator=g), torch.randn(shape[-1], generator=g)
    want = F.layer_norm(x, (shape[-1],), weight, bias, 1e-6)
    torch.testing.assert_close(xnnpack_layer_norm(x, [shape[-1]], weight, bias, 1e-6), want, rtol=0, atol=2e-6)
    torch.testing.assert_close(xnnpack_layer_norm(x, [shape[-1]]), F.layer_norm(x, (shape[-1],)), rtol=0, atol=2e-6)


def test_only_the_last_dimension():
    with pytest.raises(ValueError, match="last dimension"):
        xnnpack_layer_norm(torch.zeros(2, 3, 4), [3, 4])


def test_the_exported_model_has_no_layer_norm_left_and_computes_the_same():
    torch.manual_seed(0)
    model = create_model("xvit_test").eval()
    x = torch.randn(1, 4, 3, 32, 32)
    program = decompose_layer_norm(torch.export.export(model, (x,)))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not {t for t in targets if "layer_norm" in t}, targets
    assert "aten.mean.dim" in targets
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=1e-5)


def test_executorch_delegates_every_layer_norm(tmp_path):
    """The .pte's LayerNorms run inside XNNPACK: one subgraph carries the transformer, and the only ops left
    outside are the class token's expand and the output select."""
    from xvit_edge.export.executorch import export_pte, load_pte

    torch.manual_seed(0)
    model = create_model("xvit_test").eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        report = export_pte(model, (x,), tmp_path / "m.pte")
        got = load_pte(tmp_path / "m.pte")([x])[0]
        torch.testing.assert_close(got, model(x), rtol=0, atol=1e-4)
    outside = {op for op, n in report["ops"].items() if n["not_delegated"] and op != "getitem"}
    assert not {op for op in outside if "layer_norm" in op or "mean" in op}, outside
    assert report["delegated_subgraphs"] <= 3, report
