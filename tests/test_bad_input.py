"""What a new user meets: file names that are not UTF-8, outputs that are inputs, interrupted writes, resuming
with other data, empty classes, numbers out of range. Each gets one clear line and exit code 2 (130 when
interrupted), and nothing the user owns is overwritten or left half-written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from apps import annotate, webcam
from clips import write_clip, write_indexed_clip
from xvit_edge import create_model
from xvit_edge.bench.__main__ import main as bench_main
from xvit_edge.data.datasets import folder_samples
from xvit_edge.data.synthetic import main as synthetic_main
from xvit_edge.data.synthetic import write_dataset
from xvit_edge.evaluate import main as evaluate_main
from xvit_edge.export.__main__ import main as export_main
from xvit_edge.files import AtomicOutput, printable
from xvit_edge.flops import main as flops_main
from xvit_edge.model.weights import load_checkpoint, save_checkpoint
from xvit_edge.quantize.__main__ import main as quantize_main
from xvit_edge.train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parents[1]
# Names as a Linux filesystem allows them: bytes that are not UTF-8 (Latin-1 "é", and 0xff, 0xfe).
CLASS, CLIP, FOLDER, OUT = (os.fsdecode(b) for b in (b"caf\xe9", b"clip_\xff.mp4", b"out_\xfe", b"annotated_\xfd"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    """Every name under `folder`, hidden ones (temporary files) included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:") or ": error: " in line]
    assert len(errors) == 1, err
    return errors[0]


def run(args: list, **kw) -> subprocess.CompletedProcess:
    """A child Python: a crash in it (a segmentation fault) fails the test instead of ending pytest."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, timeout=300, **kw)


def odd_named_clip(tmp_path: Path, folder: Path, frames: int = 12) -> Path:
    """An index-encoded clip named `CLIP` in `folder`, written under a plain name in `tmp_path` and renamed, so
    that making it cannot crash this process."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(os.rename(write_indexed_clip(tmp_path / "plain.mp4", frames), folder / CLIP) or folder / CLIP)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, classes=["grow", "shrink"], train_per_class=2, val_per_class=1, frames=8, size=32, workers=0,
                  progress=False)
    return out


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--train-data", str(data), "--out", str(out), "--preset", "xvit_test", "--epochs", "1",
            "--batch-size", "2", "--workers", "0", *extra]


# ------------------------------------------------------------------------------ names that are not UTF-8

DECODE = """
import json, sys
from xvit_edge.config import Preprocessing
from xvit_edge.data.datasets import VideoClipDataset, folder_samples, list_samples
from xvit_edge.streaming import FrameSource

samples, labels = folder_samples(sys.argv[1])
ds = VideoClipDataset(samples, labels, 4, Preprocessing.for_size(32), train=False)
listed, _ = list_samples(sys.argv[2], labels=labels)
with FrameSource(samples[0][0], every_frame=True) as source:
    frames = sum(1 for _ in iter(source.read, None))
print(json.dumps({"labels": labels, "shapes": [list(ds[i][0].shape) for i in range(len(ds))],
                  "listed": [[p, y] for p, y in listed], "frames": frames}))
"""


def test_names_that_are_not_utf8_decode_for_training_and_streaming(tmp_path):
    """A class folder and a clip whose names are not UTF-8: listed, decoded, streamed, from a folder per class
    and from a CSV list naming the file by its bytes; the label is text (the odd byte as \\xe9)."""
    clip = odd_named_clip(tmp_path, tmp_path / "data" / CLASS)
    (tmp_path / "data" / "plain").mkdir()
    write_indexed_clip(tmp_path / "data" / "plain" / "a.mp4", 12)
    (tmp_path / "list.csv").write_bytes(b"data/caf\xe9/clip_\xff.mp4,caf\\xe9\n")
    done = run(["-c", DECODE, str(tmp_path / "data"), str(tmp_path / "list.csv")])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result = json.loads(done.stdout)
    assert result["labels"] == ["caf\\xe9", "plain"]
    assert result["shapes"] == [[4, 3, 32, 32]] * 2 and result["frames"] == 12
    assert result["listed"] == [[str(clip), 0]]  # JSON carries the exact name: it opens the same file
    assert b"data/caf\\xe9: the folder name is not valid UTF-8" in done.stderr


def test_apps_train_and_evaluate_take_names_that_are_not_utf8(synth, tmp_path):
    clip = odd_named_clip(tmp_path, tmp_path)
    out, log = tmp_path / FOLDER / (OUT + ".mp4"), tmp_path / FOLDER / (OUT + ".jsonl")
    (tmp_path / FOLDER).mkdir()
    done = run(["-m", "apps.annotate", "--input", str(clip), "--output", str(out), "--json", str(log),
                "--threshold", "0"])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert out.stat().st_size > 0 and len(log.read_text().splitlines()) == 12
    assert b"wrote 12 annotated frames to " in done.stdout and b"annotated_\\xfd.mp4" in done.stdout
    assert listing(tmp_path / FOLDER) == sorted([out.name, log.name])  # no temporary file left

    data = tmp_path / "data"
    for cls, name in (("grow", CLASS), ("shrink", "shrink")):  # one class and one clip of each with odd names
        for i, src in enumerate(sorted((synth / "train" / cls).iterdir())):
            (data / name).mkdir(parents=True, exist_ok=True)
            (data / name / (CLIP if i == 0 else src.name)).write_bytes(src.read_bytes())
    run_dir, scores = tmp_path / "run", tmp_path / FOLDER / "scores.json"
    code = ("import sys; from xvit_edge.train.__main__ import main as train; from xvit_edge.evaluate import main; "
            "a = sys.argv[1:]; sys.exit(train(a[:-6]) or main(a[-6:]))")  # one process: torch imported once
    done = run(["-c", code, *train_args(data, run_dir), "--checkpoint", str(run_dir / "last.pt"),
                "--data", str(data), "--json", str(scores)])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result = json.loads(scores.read_text())
    assert result["clips"] == 4 and set(result["per_class_top1"]) <= {"caf\\xe9", "shrink"}
    assert b"model: " in done.stdout and b"last.pt" in done.stdout


def test_printable_shows_the_bytes_and_leaves_text_alone():
    assert printable(CLIP) == "clip_\\xff.mp4" and printable(b"caf\xe9") == "caf\\xe9"
    assert printable("café ✓") == "café ✓"


# ----------------------------------------------------------------------------- an output that is an input

@pytest.mark.parametrize("how", ["another spelling", "symlink", "hard link"])
def test_annotate_refuses_to_write_over_its_input(tmp_path, capsys, how):
    clip = write_indexed_clip(tmp_path / "in.mp4", 12)
    (tmp_path / "sub").mkdir()
    if how == "another spelling":
        output = tmp_path / "sub" / ".." / "in.mp4"
    elif how == "symlink":
        output = tmp_path / "link.mp4"
        output.symlink_to(clip.name)
    else:
        output = tmp_path / "hard.mp4"
        os.link(clip, output)
    before, names = digest(clip), listing(tmp_path)
    assert annotate.main(["--input", str(clip), "--output", str(output)]) == 2
    assert f"--output {output} is the same file as --input {clip}" in one_error(capsys.readouterr().err)
    assert digest(clip) == before and listing(tmp_path) == names


def test_webcam_outputs_may_not_be_its_source_its_model_or_each_other(tmp_path, capsys):
    clip = write_indexed_clip(tmp_path / "in.mp4", 12)
    model = tmp_path / "model.pt"
    save_checkpoint(model, create_model("xvit_test"))
    before = {p: digest(p) for p in (clip, model)}
    cases = [(["--json", str(clip)], "--json"), (["--output", str(model)], "--output"),
             (["--output", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "o.mp4")], "are the same file")]
    for extra, says in cases:
        assert webcam.main(["--model", str(model), "--source", str(clip), "--headless", *extra]) == 2
        assert says in one_error(capsys.readouterr().err)
    assert {p: digest(p) for p in before} == before and listing(tmp_path) == ["in.mp4", "model.pt"]


def test_evaluate_json_may_not_be_an_input(synth, tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, create_model("xvit_test", num_classes=2), ["grow", "shrink"])
    (tmp_path / "link.pt").symlink_to(ckpt)
    clip = next((synth / "val" / "grow").iterdir())
    before = {p: digest(p) for p in (ckpt, clip, synth / "meta.json")}
    for json_path, says in ((tmp_path / "link.pt", "is the same file as --checkpoint"),
                            (clip, "is the same file as a clip of --data"),
                            (synth / "meta.json", "is the same file as the meta.json above --data"),
                            (tmp_path, "is a folder")):
        assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(synth / "val"), "--json", str(json_path)]) == 2
        assert says in one_error(capsys.readouterr().err)
    assert {p: digest(p) for p in before} == before


def test_training_refuses_an_out_folder_that_would_overwrite_its_init(synth, tmp_path, capsys):
    init = tmp_path / "best.pt"
    save_checkpoint(init, create_model("xvit_test", num_classes=2), ["grow", "shrink"])
    before = digest(init)
    assert train_main(train_args(synth / "train", tmp_path, "--init", str(init))) == 2
    assert "is the same file as --init" in one_error(capsys.readouterr().err)
    assert digest(init) == before and listing(tmp_path) == ["best.pt"]


# --------------------------------------------------------------------- failed and interrupted writes

def test_an_interrupted_annotation_leaves_the_old_outputs_as_they_were(tmp_path, monkeypatch, capsys):
    import apps.cli

    clip = write_indexed_clip(tmp_path / "in.mp4", 12)
    out, log = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    out.write_bytes(b"yesterday's video"), log.write_text("yesterday's labels\n")
    before, names = {p: digest(p) for p in (clip, out, log)}, listing(tmp_path)
    drawn = []

    def draw_then_interrupt(*args, **kwargs):
        drawn.append(1)
        if len(drawn) == 10:  # Ctrl-C in the middle of the file
            raise KeyboardInterrupt

    monkeypatch.setattr(apps.cli, "draw_overlay", draw_then_interrupt)
    assert annotate.main(["--input", str(clip), "--output", str(out), "--json", str(log), "--overwrite"]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert {p: digest(p) for p in before} == before and listing(tmp_path) == names


def test_a_video_too_short_for_one_prediction_says_so_and_writes_nothing(tmp_path, capsys):
    clip = write_clip(tmp_path / "short.mp4", np.zeros((5, 64, 64, 3), np.uint8))
    names = listing(tmp_path)
    assert annotate.main(["--input", str(clip), "--output", str(tmp_path / "o.mp4"),
                          "--json", str(tmp_path / "o.jsonl")]) == 2
    error = one_error(capsys.readouterr().err)
    assert error == f"error: no prediction: {clip} ended after 5 frame(s), the model needs 8; nothing was written"
    assert listing(tmp_path) == names


def test_atomic_output_replaces_only_when_complete(tmp_path):
    target = tmp_path / "scores.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), AtomicOutput(target) as out:
        out.tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and listing(tmp_path) == ["scores.json"]
    with AtomicOutput(target) as out:
        out.tmp.write_text("new")
    assert target.read_text() == "new" and listing(tmp_path) == ["scores.json"]


# ------------------------------------------------------------------------------------- resuming training

def test_resume_refuses_other_classes_and_a_checkpoint_without_training_state(synth, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(train_args(synth / "train", run_dir, "--val-data", str(synth / "val"))) == 0
    top1 = load_checkpoint(run_dir / "best.pt")[1].extra["train_state"]["best_top1"]
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"best model: {run_dir / 'best.pt'} (epoch 1, val top-1 {100 * top1:.1f}%)"
    other = tmp_path / "other"  # shrink renamed: its clips would be trained as whatever label index 1 was
    for cls, name in (("grow", "grow"), ("shrink", "spin")):
        (other / name).mkdir(parents=True)
        for src in (synth / "train" / cls).iterdir():
            (other / name / src.name).write_bytes(src.read_bytes())
    last = run_dir / "last.pt"
    before = {p: digest(p) for p in run_dir.iterdir()}
    assert train_main(train_args(other, run_dir, "--epochs", "2", "--resume", str(last))) == 2
    error = one_error(capsys.readouterr().err)
    assert f"{other}: its classes differ from those of the run being resumed ({last})" in error
    assert "not in the checkpoint: ['spin']; missing from the data: ['shrink']" in error
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, create_model("xvit_test", num_classes=2), ["grow", "shrink"])
    assert train_main(train_args(synth / "train", run_dir, "--epochs", "2", "--resume", str(plain))) == 2
    assert f"{plain}: no training state to resume (train_state, optimizer, train_config missing)" in \
        one_error(capsys.readouterr().err)
    assert {p: digest(p) for p in run_dir.iterdir()} == before
    # without --val-data: the run goes on (the curve mixes validated and unvalidated epochs) and says where
    # the model is
    assert train_main(train_args(synth / "train", run_dir, "--epochs", "2", "--resume", str(last))) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"model: {last} (no --val-data, so none was picked by validation)"
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "val_top1" in history[0] and "val_top1" not in history[1]


def test_an_empty_class_folder_is_refused_by_name(synth, tmp_path, capsys):
    data = tmp_path / "data"
    for cls in ("grow", "shrink"):
        (data / cls).mkdir(parents=True)
        for src in (synth / "train" / cls).iterdir():
            (data / cls / src.name).write_bytes(src.read_bytes())
    (data / "jump").mkdir()
    (data / "jump" / "notes.txt").write_text("clips to come")
    assert folder_samples(data)[1] == ["grow", "jump", "shrink"]  # the listing keeps its place
    assert train_main(train_args(data, tmp_path / "run")) == 2
    assert "data: no training clips for class ['jump']: add clips to it or remove it" in \
        one_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_training_that_could_use_no_clip_or_one_class_saves_nothing(synth, tmp_path, capsys, monkeypatch):
    """Unreadable clips only, or one class: an untrained (or meaningless) model must not be saved as a result."""
    # the skipped clips are logged: a fresh handler on this test's stderr, not an earlier test's closed one
    monkeypatch.setattr(logging.root, "handlers", [])
    text = tmp_path / "text"
    for cls in ("grow", "shrink"):
        (text / cls).mkdir(parents=True)
        (text / cls / "a.mp4").write_text("not a video")
    one = tmp_path / "one" / "grow"
    one.mkdir(parents=True)
    for src in (synth / "train" / "grow").iterdir():
        (one / src.name).write_bytes(src.read_bytes())
    cases = [(train_args(text, tmp_path / "r1"), "no training clip could be used (2 unreadable"),
             (train_args(synth / "train", tmp_path / "r2", "--val-data", str(text)),
              "no validation clip could be used"),
             (train_args(one.parent, tmp_path / "r3"), "1 class (grow); a classifier needs at least 2")]
    for argv, says in cases:
        assert train_main(argv) == 2, argv
        assert says in one_error(capsys.readouterr().err)
    assert not any((tmp_path / r / "last.pt").exists() for r in ("r1", "r2", "r3"))


# ---------------------------------------------------------------------------------- numbers out of range

QUANTIZE_ARGS = ["--checkpoint", "m.pt", "--data", "d", "--mode", "ptq", "--out", "q.pt"]

@pytest.mark.parametrize("main,argv,says", [
    (train_main, ["--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got '0'"),
    (train_main, ["--batch-size", "-4"], "argument --batch-size: must be a whole number >= 1, got '-4'"),
    (train_main, ["--epochs", "0"], "argument --epochs: must be a whole number >= 1"),
    (train_main, ["--lr", "0"], "argument --lr: must be a number > 0, got '0'"),
    (train_main, ["--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
    (train_main, ["--workers", "-1"], "argument --workers: must be a whole number from 0 to"),
    (train_main, ["--std", "0.2", "0", "0.2"], "argument --std: must be a number > 0, got '0'"),
    (train_main, ["--label-smoothing", "1.5"], "argument --label-smoothing: must be a number in [0, 1]"),
    (train_main, ["--lr", "1e-4", "--min-lr", "1e-3"], "--min-lr 0.001 is above --lr 0.0001"),
    (evaluate_main, ["--checkpoint", "m.pt", "--data", "d", "--threads", "0"], "argument --threads: must be a whole"),
    (evaluate_main, ["--checkpoint", "m.pt", "--data", "d", "--batch-size", "0"], "argument --batch-size: must be"),
    (synthetic_main, ["--out", "o", "--size", "0"], "argument --size: must be an even whole number from 16 to 2048, got '0'"),
    (synthetic_main, ["--out", "o", "--size", "33"], "argument --size: must be an even whole number from 16 to"),
    (synthetic_main, ["--out", "o", "--frames", "0"], "argument --frames: must be a whole number from 2 to"),
    (synthetic_main, ["--out", "o", "--train-per-class", "0"], "argument --train-per-class: must be a whole number"),
    (webcam.main, ["--threshold", "1.5"], "argument --threshold: must be a number in [0, 1], got '1.5'"),
    (webcam.main, ["--threshold", "nan"], "argument --threshold: must be a finite number"),
    (webcam.main, ["--alpha", "0"], "argument --alpha: must be a number in (0, 1], got '0'"),
    (annotate.main, ["--input", "a.mp4", "--output", "b.mp4", "--threads", "0"], "argument --threads: must be a"),
    (annotate.main, ["--input", "a.mp4", "--output", "b.mp4", "--retry-delay", "-1"], "argument --retry-delay"),
    (export_main, ["--samples", "0"], "argument --samples: must be a whole number >= 1, got '0'"),
    # NaN would switch the int8 check off (every comparison with it is false) and go into the sidecar.
    (export_main, ["--int8-min-sqnr", "nan"], "argument --int8-min-sqnr: must be a finite number, got 'nan'"),
    (quantize_main, [*QUANTIZE_ARGS, "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1"),
    (quantize_main, [*QUANTIZE_ARGS, "--calib-batches", "0"], "argument --calib-batches: must be a whole number"),
    (quantize_main, [*QUANTIZE_ARGS, "--lr", "inf"], "argument --lr: must be a finite number, got 'inf'"),
    (bench_main, ["--threads", "0"], "argument --threads: must be a whole number from 1 to"),
    # thousands of threads crash OpenBLAS/OpenMP (a segmentation fault) instead of running slowly
    (evaluate_main, ["--checkpoint", "m.pt", "--data", "d", "--threads", "100000"], "from 1 to"),
    (bench_main, ["--threads", "1", "100000"], "argument --threads: must be a whole number from 1 to"),
    (train_main, ["--workers", "100000"], "argument --workers: must be a whole number from 0 to"),
    (train_main, ["--device", "bogus"], "argument --device: must be cpu, cuda or cuda:N, got 'bogus'"),
    (train_main, ["--log-level", "loud"], "argument --log-level: invalid choice: 'LOUD'"),
    (train_main, ["--set", "name=mine"], "--set name: the name is the --preset's"),
    (export_main, ["--target", "onnx", "--precision", "fp16"], "--precision fp16 is not one onnx exports"),
    (flops_main, ["--frames", "8", "0"], "argument --frames: must be a whole number from 1 to 1024, got '0'"),
    (synthetic_main, ["--out", "o", "--size", "100000"], "argument --size: must be an even whole number from 16 to"),
])
def test_numbers_out_of_range_are_refused_when_parsed(main, argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written; if anything were, it would be here
    if main is train_main:
        argv = ["--train-data", "clips", *argv]
    if main is export_main and "--target" in argv:  # a check of the command's own, after parsing
        assert main(argv) == 2
    else:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert says in one_error(capsys.readouterr().err)
    assert listing(tmp_path) == []


def test_the_ends_of_each_range_are_accepted():
    args = webcam.build_parser().parse_args(["--threshold", "0", "--alpha", "1", "--retry-delay", "0"])
    assert (args.threshold, args.alpha, args.retry_delay) == (0.0, 1.0, 0.0)
    assert annotate.build_parser().parse_args(["--input", "a", "--output", "b", "--threshold", "1"]).threshold == 1.0


def test_sigterm_is_handled_as_ctrl_c():
    """`kill` or `timeout` stops a command the way Ctrl-C does, so its cleanup (temporary outputs removed) runs."""
    import signal

    from xvit_edge.signals import terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        terminate_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler at its next instruction
            time.sleep(1)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_profile_refuses_bad_artifacts_and_outputs_in_one_line(tmp_path, capsys, monkeypatch):
    from xvit_edge.bench.profile import main as profile_main

    monkeypatch.setattr(logging.root, "handlers", [])  # log lines go to this test's stderr, not an earlier one's

    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    keep = tmp_path / "mine.json"
    keep.write_text("mine")
    cases = [(["--artifact", str(tmp_path / "none.onnx")], "none.onnx: no such file"),
             (["--artifact", str(text)], "onnx cannot run it"),
             (["--runtime", "executorch", "--artifact", str(text)], "add --runtime onnx"),
             (["--artifact", str(text), "--out", str(tmp_path)], "is a folder; name a file"),
             (["--preset", "bogus"], "--preset bogus: unknown")]
    for argv, says in cases:
        assert profile_main([*argv, "--out", str(tmp_path / "p.json")] if "--out" not in argv else argv) == 2
        assert says in one_error(capsys.readouterr().err)
    assert not (tmp_path / "p.json").exists() and keep.read_text() == "mine"


def test_an_existing_file_the_command_did_not_write_is_never_replaced(synth, tmp_path, capsys):
    """Each command stops before any work at an existing output it cannot tell it wrote (one line, exit 2, the
    file untouched); --overwrite replaces it, and a re-run replaces the command's own earlier output."""
    from xvit_edge import Preprocessing
    from xvit_edge.bench.profile import main as profile_main
    from xvit_edge.export import export

    mine = tmp_path / "mine"
    mine.mkdir()
    owned = {name: mine / name for name in ("notes.txt", "history.json", "video.mp4", "xvit_test_fp32.onnx")}
    for path in owned.values():
        path.write_text("the user's own file")
    labels = ["grow", "shrink"]
    model = create_model("xvit_test", num_classes=2)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model, labels=labels)
    clip = write_clip(tmp_path / "in.mp4", np.zeros((6, 32, 32, 3), np.uint8))
    refused = "already exists; choose another path, or pass --overwrite"
    cases = [
        (quantize_main, ["--checkpoint", str(ckpt), "--data", str(synth), "--mode", "ptq",
                         "--out", str(owned["notes.txt"])], refused),
        (train_main, train_args(synth / "train", mine), refused),
        (evaluate_main, ["--checkpoint", str(ckpt), "--data", str(synth / "val"), "--json", str(owned["notes.txt"])],
         refused),
        (annotate.main, ["--model", str(ckpt), "--input", str(clip), "--output", str(owned["video.mp4"])], refused),
        (synthetic_main, ["--out", str(mine)], "holds files this command did not write"),
        (profile_main, ["--artifact", str(owned["xvit_test_fp32.onnx"]), "--out", str(owned["notes.txt"])], refused),
    ]
    for main, argv, says in cases:
        assert main(argv) == 2, argv
        assert says in one_error(capsys.readouterr().err)
    pre = Preprocessing.for_size(32)
    with pytest.raises(ValueError, match=refused):
        export(model, labels, pre, "onnx", mine, samples=1)
    assert all(p.read_text() == "the user's own file" for p in owned.values())
    # the command's own earlier output is replaced by a re-run; --overwrite replaces anything
    out = tmp_path / "exported"
    assert export(model, labels, pre, "onnx", out, samples=1).path == export(model, labels, pre, "onnx", out,
                                                                              samples=1).path
    assert export(model, labels, pre, "onnx", mine, samples=1, overwrite=True).path == owned["xvit_test_fp32.onnx"]
    small = ["--out", str(tmp_path / "synthetic"), "--classes", "grow", "shrink", "--train-per-class", "1",
             "--val-per-class", "0", "--frames", "4", "--size", "32", "--workers", "0"]
    assert synthetic_main(small) == 0 and synthetic_main(small) == 0  # a re-run over its own dataset
    capsys.readouterr()
