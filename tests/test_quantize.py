"""int8 quantization (PT2E, XNNPACK scheme): QAT learns, conversion matches the fake-quantized model, bad batches
leave the observers untouched, quantized checkpoints rebuild exactly, the CLI fails cleanly, the benchmark
function runs end to end on tiny data."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from xvit_edge import create_model
from xvit_edge.export.verify import sqnr_db
from xvit_edge.model.weights import CheckpointError, load_checkpoint, save_checkpoint
from xvit_edge.quantize import (
    ObserverGuard,
    calibrate,
    convert,
    load_quantized,
    op_precisions,
    prepare,
    qat_step,
    save_quantized,
)
from xvit_edge.quantize.__main__ import main
from xvit_edge.quantize.scheme import quant_modules

LABELS = ["grow", "move_left", "move_right", "shrink"]  # sorted, as the folder datasets name them


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model gains nothing from a second thread, and on a busy machine contended threads made QAT
    steps ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clips(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("xvit_test", num_classes=4, summary_layers=(1,)).eval()
    with torch.no_grad():  # logits of a trained model's size, not the ~1e-3 of a fresh classifier
        m.head.fc2.weight.normal_(0, 1.0)
        m.temporal_embed.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def qat_prepared(model):
    return prepare(model, "qat")


@pytest.fixture(scope="module")
def ptq_prepared(model):
    return prepare(model, "ptq")


def observer_state(prepared) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.clone() for name, m in quant_modules(prepared).items() for k, v in m.state_dict().items()}


def run_qat(prepared, batches, labels, lr=1e-3):
    guard = ObserverGuard(prepared)
    opt = torch.optim.AdamW(prepared.parameters(), lr=lr)
    losses = [qat_step(prepared, opt, x, labels, torch.nn.CrossEntropyLoss(), guard) for x in batches]
    return losses, guard


@pytest.fixture(scope="module")
def trained_qat(model, qat_prepared):
    """QAT overfitting one fixed batch for 20 steps; also whether the float model kept its weights."""
    before = copy.deepcopy(model.state_dict())
    prepared = copy.deepcopy(qat_prepared)
    y = torch.tensor([0, 1, 2, 3])
    # A brightness offset per class: a fresh random model maps noise clips to nearly the same features and
    # sits on a plateau for a while, which would test the plateau rather than QAT.
    x = clips(4, 1) + (y.float() - 1.5).view(4, 1, 1, 1, 1)
    losses, guard = run_qat(prepared, [x] * 20, y)
    untouched = all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    return prepared, losses, guard, untouched


def test_qat_loss_decreases_and_the_float_model_is_untouched(trained_qat):
    _, losses, guard, untouched = trained_qat
    assert all(loss is not None and math.isfinite(loss) for loss in losses) and not guard.skipped
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, losses
    # Fine-tuning trains the graph's own copy of the weights, never the model it was captured from.
    assert untouched


def test_converted_matches_fake_quant_and_the_documented_op_split(model, trained_qat):
    q = convert(copy.deepcopy(trained_qat[0]), model, "qat")
    x = clips(8, 2)
    with torch.no_grad():
        fake, int8, fp32 = q.prepared(x), q.converted(x), q.float_model(x)
    assert sqnr_db(fake, int8) >= 30.0
    assert (fake.argmax(-1) == int8.argmax(-1)).float().mean() >= 0.99
    assert math.isfinite(sqnr_db(fp32, int8))
    ops = op_precisions(q.converted)
    assert {"linear", "conv2d", "mul"} <= set(ops["int8"])
    # The adds (residual stream, position embedding) and the cats (class token, the mixing's channel groups)
    # stay float on purpose: see scheme.FLOAT_OPS.
    assert {"layer_norm", "softmax", "bmm", "gelu", "add", "cat"} <= set(ops["float"])  # attention: 3-D bmm
    assert not {"linear", "conv2d"} & set(ops["float"])
    assert not {"layer_norm", "softmax", "add", "cat"} & set(ops["int8"])


@pytest.mark.filterwarnings("ignore:torch.inf detected")  # the histogram observer meeting the overflow
def test_bad_batches_do_not_touch_the_observers(qat_prepared, ptq_prepared):
    good = [clips(2, 10), clips(2, 11)]
    nan = clips(2, 12)
    nan[0, 1, 2, 3, 4] = float("nan")
    huge = torch.full((2, 4, 3, 32, 32), 3e38)  # finite, but overflows inside the model
    inf = torch.full((2, 4, 3, 32, 32), float("inf"))
    y = torch.tensor([0, 1])

    # PTQ calibration
    clean, dirty = copy.deepcopy(ptq_prepared), copy.deepcopy(ptq_prepared)
    calibrate(clean, good, 10)
    guard = ObserverGuard(dirty)
    assert calibrate(dirty, [good[0], nan, huge, inf, None, good[1]], 10, guard) == 2
    assert len(guard.skipped) == 3 and "non-finite input" in guard.skipped[0] and "inside the model" in guard.skipped[1]
    a, b = observer_state(clean), observer_state(dirty)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())

    # QAT: the skipped steps change neither the ranges nor the weights
    clean, dirty = copy.deepcopy(qat_prepared), copy.deepcopy(qat_prepared)
    run_qat(clean, good, y)
    losses, guard = run_qat(dirty, [good[0], nan, huge, good[1]], y)
    assert losses[1] is None and losses[2] is None and len(guard.skipped) == 2
    a, b = observer_state(clean), observer_state(dirty)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())
    for (name, p), q in zip(clean.named_parameters(), dirty.parameters()):
        assert torch.equal(p, q), name


def test_quantized_checkpoint_round_trip_is_exact(model, trained_qat, tmp_path):
    q = convert(copy.deepcopy(trained_qat[0]), model, "qat")
    path = tmp_path / "qat.pt"
    save_quantized(path, q, LABELS)
    converted, fake_quant, config, labels, pre, scheme, step = load_quantized(path)
    assert step is None and config == model.config and labels == LABELS and pre.crop_size == 32
    assert scheme["mode"] == "qat" and scheme["settings"]["weight"]["qscheme"] == "per_channel_symmetric"
    assert scheme["observers"] == len(quant_modules(q.prepared)) and "observer_state" not in scheme
    x = clips(3, 3)
    with torch.no_grad():
        assert torch.equal(converted(x), q.converted(x))
        assert torch.equal(fake_quant(x), q.prepared(x))

    # The file is an ordinary checkpoint too; a plain one is refused with the command that makes a quantized one.
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, model, LABELS)
    with pytest.raises(CheckpointError, match="not a quantized checkpoint.*python -m xvit_edge.quantize"):
        load_quantized(plain)
    assert "stream" not in scheme  # not a causal model: no streaming step
    with pytest.raises(CheckpointError, match="not a causal mixing model"):
        load_quantized(path, stream=True)
    obj = torch.load(path, weights_only=True)
    obj["config"]["summary_layers"] = []  # same weights, another graph: the observer state cannot fit it
    torch.save(obj, tmp_path / "other_config.pt")
    with pytest.raises(CheckpointError, match="observer state does not fit"):
        load_quantized(tmp_path / "other_config.pt")
    obj = torch.load(path, weights_only=True)
    obj["quantization"]["settings"]["weight"]["quant_min"] = -128
    torch.save(obj, tmp_path / "other_settings.pt")
    with pytest.raises(CheckpointError, match="other quantizer settings"):
        load_quantized(tmp_path / "other_settings.pt")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, model):
    from xvit_edge.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("qdata")
    write_dataset(root / "data", classes=LABELS, train_per_class=2, val_per_class=1, frames=8, size=40, workers=0,
                  progress=False)
    save_checkpoint(root / "fp32.pt", model, LABELS)
    return root


def test_cli_bad_input_is_one_line_exit_2(tiny_data, tmp_path, capsys):
    ckpt, data = str(tiny_data / "fp32.pt"), str(tiny_data / "data")
    base = ["--checkpoint", ckpt, "--data", data, "--mode", "ptq", "--out", str(tmp_path / "q.pt")]
    # Refused by argparse itself: a usage line and exit 2.
    for argv in ([*base[:5], "int4", *base[6:]], [*base, "--epochs", "0"], [*base, "--lr", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
    assert "--lr" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    (tmp_path / "no_val" / "train").mkdir(parents=True)
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt"), *base[2:]], "no such file"),
        (["--checkpoint", str(junk), *base[2:]], "not a readable PyTorch checkpoint"),
        ([*base[:2], "--data", str(tmp_path / "nowhere"), *base[4:]], "no such folder"),
        ([*base[:2], "--data", str(tmp_path / "no_val"), *base[4:]], "no 'val' split"),
        ([*base[:6], "--out", ckpt], "would overwrite the input checkpoint"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "q.pt").exists()


def test_cli_ptq_writes_a_loadable_quantized_checkpoint(tiny_data, tmp_path, capsys):
    out = tmp_path / "ptq.pt"
    assert main(["--checkpoint", str(tiny_data / "fp32.pt"), "--data", str(tiny_data / "data"), "--mode", "ptq",
                 "--out", str(out), "--batch-size", "4", "--calib-batches", "2", "--workers", "0"]) == 0
    assert "SQNR" in capsys.readouterr().out
    model, meta = load_checkpoint(out)  # still an ordinary checkpoint (load_quantized: see the round-trip test)
    scheme = meta.extra["quantization"]
    assert scheme["mode"] == "ptq" and meta.labels == LABELS and scheme["observer_state"]
    assert set(scheme["metrics"]["val"]) >= {"sqnr_db", "top1_agreement", "fp32_top1", "int8_top1"}


def test_quantization_benchmark_on_tiny_data(tiny_data, tmp_path, capsys):
    """Through its command, `python -m xvit_edge.bench.quantization` (2 QAT steps: 8 clips, batches of 4)."""
    from xvit_edge.bench.quantization import main as bench_main

    args = ["--checkpoint", str(tiny_data / "fp32.pt"), "--data", str(tiny_data / "data"), "--out",
            str(tmp_path / "bench"), "--tag", "tiny", "--batch-size", "4", "--calib-batches", "1", "--workers", "0"]
    assert bench_main(args) == 0
    assert "QAT int8" in capsys.readouterr().out
    results = json.loads((tmp_path / "bench" / "quantization_tiny.json").read_text())
    assert results["checkpoint"] == "fp32.pt" and "fp32.pt" in results["source"]
    assert bench_main([*args[:3], str(tmp_path / "missing"), *args[4:]]) == 2
    assert "does not exist" in capsys.readouterr().err
    for mode in ("ptq", "qat"):
        r = results[mode]
        assert 0.0 <= r["top1"] <= 1.0 and 0.0 <= r["top1_agreement"] <= 1.0 and r["clips"] == 4
        assert math.isfinite(r["sqnr_db"]) and r["skipped_batches"] == 0 and "linear" in r["ops"]["int8"]
    assert 0.0 <= results["fp32"]["top1"] <= 1.0 and results["qat"]["history"][0]["step"] == 2
    for ablation in ("ptq_adds_int8", "ptq_cats_int8"):  # the ablations behind scheme.FLOAT_OPS
        assert math.isfinite(results[ablation]["sqnr_db"])


# ------------------------------------------------------------------------------------ the streaming step


@pytest.fixture(scope="module")
def causal_model():
    from xvit_edge import get_config
    from xvit_edge.config import causal_variant

    torch.manual_seed(1)
    m = create_model(causal_variant(get_config("xvit_test", num_classes=4))).eval()
    with torch.no_grad():
        m.head.fc2.weight.normal_(0, 1.0)
    return m


def test_streaming_step_calibration_skips_bad_batches(causal_model):
    """The step's observers see clips streamed frame by frame; bad batches leave them as they were."""
    from xvit_edge.quantize.stream import calibrate_step, prepare_step

    cfg = causal_model.config
    good = [clips(2, 20), clips(2, 21)]
    nan = clips(2, 22)
    nan[1, 3, 0, 5, 5] = float("nan")
    huge = torch.full((2, 4, 3, 32, 32), 3e38)
    fresh = prepare_step(causal_model)
    clean, dirty, unused = (copy.deepcopy(fresh) for _ in range(3))
    assert calibrate_step(clean, cfg, good, 10) == (2, [])
    used, skipped = calibrate_step(dirty, cfg, [good[0], nan, huge, None, good[1]], 10)
    assert used == 2 and len(skipped) == 2 and "step calibration batch 1" in skipped[0]
    a, b = observer_state(clean), observer_state(dirty)
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="no usable calibration batch"):
        calibrate_step(unused, cfg, [nan, None], 10)


def test_causal_checkpoint_carries_its_int8_streaming_step(int8_stream):
    """PTQ of a causal model calibrates its step on the same clips (session fixture); the checkpoint rebuilds
    that step exactly; the int8 step streamed from a fresh state is close to the float clip model."""
    from xvit_edge.quantize.stream import StreamedClips

    q, loaded = int8_stream["ptq"], int8_stream["quantized"]
    assert load_quantized(int8_stream["checkpoint"]).converted_step is None  # rebuilt only when asked for
    stream = loaded.scheme["stream"]
    assert stream["mode"] == "ptq" and stream["observers"] > 0 and "linear" in stream["ops"]["int8"]
    assert "cat" in stream["ops"]["float"] and "softmax" in stream["ops"]["float"]
    x = clips(3, 32)
    with torch.no_grad():
        int8 = StreamedClips(loaded.converted_step, q.config)(x)
        assert torch.equal(int8, StreamedClips(q.step_converted, q.config)(x))
        assert sqnr_db(q.float_model(x), int8) > 20


def test_cli_qat_of_a_causal_model_reports_its_streaming_step(causal_model, tiny_data, tmp_path, capsys):
    save_checkpoint(tmp_path / "causal.pt", causal_model, LABELS)
    out = tmp_path / "qat.pt"
    assert main(["--checkpoint", str(tmp_path / "causal.pt"), "--data", str(tiny_data / "data"), "--mode", "qat",
                 "--out", str(out), "--batch-size", "4", "--max-steps", "2", "--calib-batches", "1",
                 "--workers", "0"]) == 0
    assert "streaming step (int8" in capsys.readouterr().out
    scheme = load_checkpoint(out)[1].extra["quantization"]
    assert scheme["mode"] == "qat" and scheme["stream"]["mode"] == "ptq" and scheme["stream_observer_state"]
    assert scheme["metrics"]["stream_val"]["clips"] == 4 and math.isfinite(scheme["metrics"]["stream_val"]["sqnr_db"])
