"""`python -m xvit_edge.evaluate`: the scores are what the model predicts clip by clip, views are averaged, and
bad input gets one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xvit_edge.config import Preprocessing, get_config
from xvit_edge.data.datasets import VideoClipDataset, load_samples
from xvit_edge.data.synthetic import write_dataset
from xvit_edge.evaluate import main, score
from xvit_edge.model import XViT
from xvit_edge.model.weights import save_checkpoint

LABELS = ["grow", "move_left", "move_right", "shrink"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, classes=["move_left", "move_right", "grow", "shrink"], train_per_class=1, val_per_class=3,
                  frames=8, size=48, workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def model_and_ckpt(tmp_path_factory) -> tuple[XViT, Path]:
    torch.manual_seed(3)
    model = XViT(get_config("xvit_test", num_classes=4)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(path, model, LABELS, Preprocessing.for_size(model.config.img_size))
    return model, path


def by_hand(model: XViT, samples, clips: int) -> torch.Tensor:
    """Each video's class probabilities, its views run one at a time and averaged."""
    ds = VideoClipDataset(samples, LABELS, model.config.num_frames, Preprocessing.for_size(model.config.img_size),
                          train=False, num_clips=clips)
    with torch.no_grad():
        out = []
        for i in range(len(ds)):
            views = ds[i][0].reshape(clips, *ds[i][0].shape[-4:])
            out.append(torch.stack([model(v[None])[0].softmax(-1) for v in views]).mean(0))
    return torch.stack(out)


@pytest.mark.parametrize("clips", [1, 2])
def test_scores_are_the_models_predictions_clip_by_clip(synth, model_and_ckpt, clips):
    model, _ = model_and_ckpt
    samples, _ = load_samples(synth / "val", labels=LABELS)
    pairs = [("move_left", "move_right"), ("grow", "shrink")]
    got = score(model, samples, LABELS, Preprocessing.for_size(model.config.img_size), pairs=pairs, clips=clips,
                batch_size=5)
    probs = by_hand(model, samples, clips)
    targets = torch.tensor([label for _, label in samples])
    pred = probs.argmax(-1)
    assert got["clips"] == 12 and got["views"] == {"clips": clips, "crops": 1} and got["skipped"] == []
    assert got["top1"] == pytest.approx((pred == targets).float().mean().item())
    assert got["per_class_top1"]["grow"] == pytest.approx((pred[targets == 0] == 0).float().mean().item())
    partner = torch.tensor([3, 2, 1, 0])
    rows = torch.arange(12)
    assert got["direction_accuracy"] == pytest.approx(
        (probs[rows, targets] > probs[rows, partner[targets]]).float().mean().item())
    pair_of = torch.tensor([0, 1, 1, 0])
    assert got["pair_accuracy"] == pytest.approx((pair_of[pred] == pair_of[targets]).float().mean().item())
    wrong = sum(n for _, _, n in got["confusions"])
    assert wrong == int((pred != targets).sum())


def test_cli_reads_pairs_from_meta_json_writes_json_and_skips_a_corrupt_file(synth, model_and_ckpt, tmp_path,
                                                                            capsys):
    _, ckpt = model_and_ckpt
    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    for folder in (synth / "val").iterdir():
        (data / "val" / folder.name).symlink_to(folder)
    (data / "meta.json").write_text((synth / "meta.json").read_text())
    extra = tmp_path / "list.csv"  # a list file: three good clips and one that is not a video
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    good = sorted((synth / "val" / "grow").iterdir())
    extra.write_text("".join(f"{p},grow\n" for p in good) + f"{bad},shrink\n")
    assert main(["--checkpoint", str(ckpt), "--data", str(data / "val"), "--clips", "2",
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert f"wrote the scores to {tmp_path / 's.json'}" in out
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["clips"] == 12 and "direction_accuracy" in result and result["paired_clips"] == 12
    assert f"top-1 {100 * result['top1']:.1f}% on 12 clips (2 temporal clip(s) x 1 crop(s) each)" in out
    assert main(["--checkpoint", str(ckpt), "--data", str(extra), "--pairs", "none",
                 "--json", str(tmp_path / "l.json")]) == 0
    listed = json.loads((tmp_path / "l.json").read_text())
    assert listed["clips"] == 3 and listed["skipped"] == [str(bad)] and "direction_accuracy" not in listed
    assert "1 unusable file(s) skipped" in capsys.readouterr().out


def test_bad_input_is_one_line(synth, model_and_ckpt, tmp_path, capsys):
    _, ckpt = model_and_ckpt
    other = tmp_path / "other"
    (other / "jump").mkdir(parents=True)
    cases = [(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(synth / "val")], "none.pt"),
             (["--checkpoint", str(ckpt), "--data", str(tmp_path / "nowhere")], "no such folder"),
             (["--checkpoint", str(ckpt), "--data", str(other)], "not among the training labels")]
    (other / "jump" / "a.mp4").write_bytes(b"")
    for argv, says in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(ckpt), "--data", str(synth / "val"), "--clips", "0"])
