"""The two int8 activation schemes: static (calibrated per-tensor ranges, every runtime) and dynamic (each
linear's input quantized per call, ExecuTorch only); recorded in the checkpoint and the sidecar, and a
checkpoint of one scheme never exported as the other."""

from __future__ import annotations

import json

import pytest
import torch

from xvit_edge.export import export
from xvit_edge.export.__main__ import main as export_main
from xvit_edge.export.verify import sample_inputs
from xvit_edge.quantize import load_quantized, quantize_ptq, save_quantized
from xvit_edge.quantize.__main__ import main as quantize_main
from xvit_edge.quantize.metrics import agreement


@pytest.fixture(scope="module")
def dynamic(causal_test_model, tmp_path_factory):
    """A dynamic-scheme int8 checkpoint of the causal test model (clip graph and streaming step)."""
    from xvit_edge import Preprocessing

    out = tmp_path_factory.mktemp("dynamic")
    cfg = causal_test_model.config
    labels = [f"action_{i}" for i in range(cfg.num_classes)]
    pre = Preprocessing.for_size(cfg.img_size, mean=(0.5,) * 3, std=(0.5,) * 3)
    clips = torch.cat(sample_inputs(cfg, 4, seed=11, preprocessing=pre))
    q = quantize_ptq(causal_test_model, [clips[:2], clips[2:]], max_batches=2, scheme="dynamic")
    save_quantized(out / "dynamic.pt", q, labels, pre)
    return {"path": out / "dynamic.pt", "q": q, "labels": labels, "preprocessing": pre, "clips": clips}


def test_dynamic_scheme_quantizes_the_linears_per_call_and_rebuilds_exactly(dynamic, causal_test_model):
    q, clips = dynamic["q"], dynamic["clips"]
    assert q.scheme == "dynamic"
    loaded = load_quantized(dynamic["path"], stream=True)
    assert loaded.scheme["activations"] == "dynamic" and loaded.scheme["settings"]["scheme"] == "dynamic"
    # Only the linears run in int8; the patch embedding's conv, adds and cats stay float.
    assert set(loaded.scheme["ops"]["int8"]) == {"linear"} and "conv2d" in loaded.scheme["ops"]["float"]
    assert set(loaded.scheme["stream"]["ops"]["int8"]) == {"linear"}
    # Dynamic: the int8 graph chooses its activation scales from each input (no calibrated ranges stored).
    targets = {str(n.target) for n in loaded.converted.graph.nodes if n.op == "call_function"}
    assert any("choose_qparams" in t for t in targets)
    with torch.no_grad():
        assert torch.equal(loaded.converted(clips), q.converted(clips))
        fp32 = causal_test_model(clips)
        assert agreement(fp32, loaded.converted(clips))["sqnr_db"] > 25


def test_dynamic_checkpoint_exports_to_executorch_clip_and_stream(dynamic, causal_test_model, tmp_path):
    quantized = load_quantized(dynamic["path"], stream=True)
    for mode in ("clip", "stream"):
        art = export(causal_test_model, dynamic["labels"], dynamic["preprocessing"], "executorch", tmp_path / mode,
                     "int8", mode=mode, samples=2, quantized=quantized)
        sidecar = json.loads(art.sidecar.read_text())
        assert sidecar["quantization"]["activations"] == "dynamic" and "dynamic int8" in sidecar["quantization"]["scheme"]
        parity = sidecar["verification"]["parity"]
        assert parity["sqnr_db"] >= 30 and parity["top1_agreement"] >= 0.99, parity
        linear = art.report["delegation"]["ops"]["aten_linear_default"]
        assert linear["delegated"] > 0 and linear["not_delegated"] == 0


def test_a_scheme_a_target_cannot_run_or_not_asked_for_is_one_line_exit_2(dynamic, tmp_path, capsys):
    ckpt = str(dynamic["path"])
    out = tmp_path / "out"
    cases = [
        (["--target", "onnx"], "runs on ExecuTorch only"),
        (["--target", "coreml"], "runs on ExecuTorch only"),
        (["--target", "all", "--mode", "stream"], "runs on ExecuTorch only"),  # refused before ExecuTorch's is written
        (["--target", "executorch", "--int8-scheme", "static"], "quantized with the dynamic int8 scheme, not static"),
    ]
    for argv, message in cases:
        assert export_main([*argv, "--checkpoint", ckpt, "--precision", "int8", "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
        assert not out.exists() or not any(out.iterdir())
    assert export_main(["--target", "executorch", "--int8-scheme", "dynamic", "--precision", "fp32",
                        "--checkpoint", ckpt, "--out", str(out)]) == 2
    assert "--precision int8 only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # an unknown scheme name: argparse's usage line
        export_main(["--target", "executorch", "--int8-scheme", "int4", "--checkpoint", ckpt, "--precision", "int8"])
    assert e.value.code == 2 and "--int8-scheme" in capsys.readouterr().err


def test_quantize_cli_refuses_an_unknown_scheme_and_dynamic_qat(dynamic, tmp_path, capsys):
    from xvit_edge.model.weights import save_checkpoint

    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, dynamic["q"].float_model, dynamic["labels"], dynamic["preprocessing"])
    base = ["--checkpoint", str(plain), "--data", str(tmp_path), "--out", str(tmp_path / "q.pt")]
    with pytest.raises(SystemExit) as e:
        quantize_main([*base, "--mode", "ptq", "--scheme", "int4"])
    assert e.value.code == 2 and "--scheme" in capsys.readouterr().err
    assert quantize_main([*base, "--mode", "qat", "--scheme", "dynamic"]) == 2
    err = capsys.readouterr().err.strip()
    assert "use --mode ptq with --scheme dynamic" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "q.pt").exists()
