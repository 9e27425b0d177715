"""Hand-edited checkpoints, configs and sidecars: each is refused when loaded, in one line naming the file and
what is wrong, instead of a traceback in a runtime later or a silently wrong answer (NaN logits read as
"class 0", a label list shorter than the head, a window that fills too early)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from xvit_edge import create_model
from xvit_edge.config import Preprocessing, get_config
from xvit_edge.evaluate import main as evaluate_main
from xvit_edge.export.__main__ import main as export_main
from xvit_edge.export.errors import ExportError
from xvit_edge.export.sidecar import read_sidecar
from xvit_edge.export.verify import compare
from xvit_edge.model.weights import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ok.pt"
    save_checkpoint(path, create_model("xvit_test"))
    return path


def edited(saved, tmp_path, change) -> str:
    obj = torch.load(saved, weights_only=True)
    change(obj)
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    return str(path)


def _nan_weight(obj):
    obj["state_dict"]["head.fc.weight" if "head.fc.weight" in obj["state_dict"] else
                      next(k for k, v in obj["state_dict"].items() if v.is_floating_point())][0] = math.nan


@pytest.mark.parametrize("change,says", [
    (_nan_weight, "NaN or infinite values"),
    (lambda o: o["preprocessing"].update(std=[0.0, 1.0, 1.0]), "std must be 3 finite numbers, each > 0"),
    (lambda o: o["preprocessing"].update(crop_size=0), "1 <= crop_size <= resize_shorter"),
    (lambda o: o["preprocessing"].update(crop_size=16, resize_shorter=20), "preprocessing crops 16 px"),
    (lambda o: o.update(labels=None), "labels are not a list of names"),
    (lambda o: o.update(labels=o["labels"][:5]), "5 labels (5 distinct) for a model with 10 classes"),
    (lambda o: o.update(labels=["same"] * 10), "10 labels (1 distinct)"),
    (lambda o: o["config"].update(img_size="abc"), "img_size must be a whole number"),
    (lambda o: o["config"].update(drop_rate=math.nan), "drop_rate must be a finite number"),
])
def test_an_edited_checkpoint_is_refused_when_loaded(saved, tmp_path, capsys, change, says):
    path = edited(saved, tmp_path, change)
    with pytest.raises(CheckpointError, match="edited.pt") as e:
        load_checkpoint(path)
    assert says in str(e.value)
    # and the commands say it in one line, exit 2
    assert export_main(["--target", "onnx", "--checkpoint", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_config_values_of_the_wrong_kind_are_refused():
    for bad, says in [(dict(num_frames=4.0), "num_frames must be a whole number"),
                      (dict(embed_dim=1.5), "embed_dim must be a whole number"),
                      (dict(mlp_ratio="x"), "mlp_ratio must be a finite number"),
                      (dict(depth=0), "depth must be >= 1"),
                      (dict(drop_path_rate=1.0), "drop_path_rate must be in [0, 1)")]:
        with pytest.raises(ValueError, match=None) as e:
            get_config("xvit_test", **bad)
        assert says in str(e.value)
    with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
        Preprocessing(mean=("a", "b", "c"))


def test_verification_refuses_nan_instead_of_passing_it():
    ok, nan = torch.randn(2, 10), torch.full((2, 10), math.nan)
    assert compare([ok], [ok.clone()])["max_abs_diff"] == 0
    with pytest.raises(ExportError, match="the model itself outputs NaN"):
        compare([nan], [ok])
    with pytest.raises(ExportError, match="the artifact outputs NaN"):
        compare([ok], [nan])


def test_evaluate_refuses_a_nan_checkpoint(saved, tmp_path, capsys):
    path = edited(saved, tmp_path, _nan_weight)
    assert evaluate_main(["--checkpoint", path, "--data", str(tmp_path)]) == 2
    assert "NaN or infinite values" in capsys.readouterr().err


def test_an_edited_sidecar_is_refused(stream_artifacts, tmp_path):
    sidecar = json.loads(stream_artifacts["onnx"].sidecar.read_text())
    for change, says in [(lambda d: d["config"].update(num_frames=2), "do not match its config"),
                         (lambda d: d["preprocessing"].update(crop_size=0), "1 <= crop_size"),
                         (lambda d: d["preprocessing"].update(mean=["a", "b", "c"]), "mean must be 3 finite"),
                         (lambda d: d["preprocessing"].update(std=[0, 0, 0]), "std must be"),
                         (lambda d: d.update(frames=3), "do not match its config")]:
        d = json.loads(json.dumps(sidecar))
        change(d)
        path = tmp_path / "edited.onnx.json"
        path.write_text(json.dumps(d))
        with pytest.raises(ValueError) as e:
            read_sidecar(path)
        assert says in str(e.value) and "edited.onnx.json" in str(e.value)
    path.write_text(json.dumps(sidecar))
    assert read_sidecar(path)["frames"] == sidecar["frames"]
