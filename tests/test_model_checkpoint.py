"""Our checkpoint format round-trips; bad files get a CheckpointError naming the file and the problem."""

from __future__ import annotations

import argparse

import pytest
import torch

from xvit_edge import Preprocessing, create_model
from xvit_edge.model.weights import CheckpointError, load_checkpoint, read_state_dict, save_checkpoint


def saved(tmp_path, **overrides):
    model = create_model("xvit_test", **overrides).eval()
    path = tmp_path / "model.pt"
    pre = Preprocessing.for_size(32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    save_checkpoint(path, model, labels=[f"class{i}" for i in range(10)], preprocessing=pre, epoch=3)
    return model, path, pre


def test_round_trip_rebuilds_the_exact_model(tmp_path):
    model, path, pre = saved(tmp_path, shift_div=8, summary_layers=(1,))
    loaded, meta = load_checkpoint(path)
    assert meta.config == model.config and meta.preprocessing == pre
    assert meta.labels[3] == "class3" and meta.extra == {"epoch": 3}
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_save_refuses_a_label_count_that_does_not_match(tmp_path):
    with pytest.raises(ValueError, match="3 labels for a model with 10 classes"):
        save_checkpoint(tmp_path / "m.pt", create_model("xvit_test"), labels=["a", "b", "c"])


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is not a checkpoint at all", "not a readable PyTorch checkpoint"),
])
def test_garbage_files(tmp_path, content, match):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    assert "bad.pth" in str(e.value)


def test_truncated_checkpoint(tmp_path):
    _, path, _ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_file():
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint("/nonexistent/model.pt")


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": argparse.Namespace(cmd="rm -rf ~")}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_state_dict(path)


def test_bare_state_dict_is_pointed_to_the_importers(tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(create_model("xvit_test").state_dict(), path)
    with pytest.raises(CheckpointError, match="load_timm_weights or load_official_xvit"):
        load_checkpoint(path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    _, path, _ = saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["embed_dim"] = 64  # config now disagrees with the tensors
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"has shape \(1, 1, 32\) in the file but \(1, 1, 64\)"):
        load_checkpoint(path)
    payload["config"]["attention"] = "bogus"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="attention must be one of"):
        load_checkpoint(path)


def test_ddp_prefix_and_container_are_unwrapped(tmp_path):
    sd = create_model("xvit_test").state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"model_state": {"module." + k: v for k, v in sd.items()}, "epoch": 1}, path)
    assert read_state_dict(path).keys() == sd.keys()


def test_fp16_storage_halves_the_file_and_loads_back_into_fp32(tmp_path):
    torch.manual_seed(0)
    model = create_model("xvit_test", num_classes=3).eval()
    save_checkpoint(tmp_path / "fp32.pt", model)
    save_checkpoint(tmp_path / "fp16.pt", model, storage_dtype=torch.float16)
    assert (tmp_path / "fp16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size
    loaded, _ = load_checkpoint(tmp_path / "fp16.pt")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, model.config.num_frames, 3, model.config.img_size, model.config.img_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-2, rtol=1e-2)
