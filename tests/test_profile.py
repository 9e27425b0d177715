"""`python -m xvit_edge.bench.profile`: the command exports a small model, profiles it and writes its JSON."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("executorch")

from xvit_edge.bench.profile import main  # noqa: E402

COMMON = {"runtime", "mode", "precision", "model", "artifact", "threads", "warmup", "runs", "run_ms", "ops_ms",
          "by_op_type", "by_kind", "top_nodes"}


@pytest.mark.parametrize("runtime,precision,kinds,extra", [
    ("onnx", "int8", {"int8", "float", "quantize_dequantize"}, {"float_op_types", "quantize_dequantize", "session"}),
    ("executorch", "fp32", {"delegated", "not_delegated"}, {"delegate_calls_per_run", "not_delegated_ops",
                                                            "delegation"}),
])
def test_profile_writes_where_the_time_goes(tmp_path, runtime, precision, kinds, extra):
    out = tmp_path / "profile.json"
    assert main(["--runtime", runtime, "--precision", precision, "--preset", "xvit_test", "--warmup", "1",
                 "--runs", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert COMMON | extra <= set(r) and r["runs"] == 2 and r["model"] == {"preset": "xvit_test", "weights": "random"}
    assert set(r["by_kind"]) == kinds and r["run_ms"]["median"] > 0 and r["top_nodes"]
    assert abs(sum(o["ms"] for o in r["by_op_type"]) - r["ops_ms"]) < 1e-6 * max(1.0, r["ops_ms"])
    if runtime == "onnx":  # the int8 matrix products run as integer kernels, the softmax in float
        assert any(o["op_type"] in ("QGemm", "QLinearMatMul", "MatMulIntegerToFloat") for o in r["by_op_type"])
        assert any(o["op_type"] == "Softmax" for o in r["float_op_types"])
    else:  # every partition is called once a run; the lowered program says how many there are
        assert r["delegate_calls_per_run"] == r["delegation"]["delegated_subgraphs"] >= 1
