"""The demo apps end to end: the headless webcam demo on a real clip, the file annotator, and every failure
ending in one clear line with the documented exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps import annotate, webcam
from clips import real_clip_vp9, write_clip  # noqa: F401 - fixture
from fakes import FakeCapture, FakeOpener
from xvit_edge import create_model
from xvit_edge.data.video import count_frames
from xvit_edge.model.weights import save_checkpoint
from xvit_edge.streaming import CaptureError

ROOT = Path(__file__).resolve().parents[1]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len([line for line in lines if line.startswith("error:")]) == 1, err
    return next(line for line in lines if line.startswith("error:"))


def test_headless_demo_annotates_the_real_clip(stream_artifacts, real_clip_vp9, tmp_path, capsys):  # noqa: F811
    """The issue's command as a user types it (no --every-frame): a file played headless keeps every frame."""
    out, log = tmp_path / "annotated.mp4", tmp_path / "frames.jsonl"
    code = webcam.main(["--model", str(stream_artifacts["checkpoint"]), "--source", str(real_clip_vp9), "--headless",
                        "--output", str(out), "--json", str(log), "--threshold", "0.2"])
    assert code == 0
    n = count_frames(real_clip_vp9)
    assert count_frames(out) == n == 230
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(n))
    assert [r["predicted"] for r in records] == [False] * 3 + [True] * (n - 3)  # from the T-th frame on
    assert all(r["label"] for r in records[3:])
    stdout = capsys.readouterr().out
    assert f"processed {n} frames" in stdout and f"dropped 0/{n}" in stdout and f"wrote {n} annotated frames" in stdout
    assert f"wrote {n} JSON lines to {log}" in stdout


def test_annotating_a_file_with_the_exported_step_is_deterministic(stream_artifacts, tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 256, (20, 48, 64, 3), dtype=np.uint8)
    clip = write_clip(tmp_path / "in.mp4", frames)
    runs = []
    for i in range(2):
        log = tmp_path / f"run{i}.jsonl"
        args = ["--model", str(stream_artifacts["onnx"].path), "--input", str(clip), "--output",
                str(tmp_path / f"out{i}.mp4"), "--json", str(log), "--smoothing", "vote", "--threshold", "0"]
        assert annotate.main(args) == 0
        runs.append(log.read_text())
        assert count_frames(tmp_path / f"out{i}.mp4") == 20
    assert runs[0] == runs[1]
    capsys.readouterr()


def test_bad_model_source_or_video_exits_2_with_one_line(stream_artifacts, tmp_path, capsys):
    model = str(stream_artifacts["checkpoint"])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, create_model("xvit_test"))
    clip = str(write_clip(tmp_path / "ok.mp4", np.zeros((5, 32, 32, 3), np.uint8)))
    cases = [
        (["--model", model, "--source", str(tmp_path / "missing.mp4"), "--headless"], "missing.mp4: no such file"),
        (["--model", model, "--source", str(corrupt), "--headless"], "corrupt.mp4: not a video OpenCV can open"),
        (["--model", str(junk), "--source", clip, "--headless"], "junk.pt: not a readable PyTorch checkpoint"),
        (["--model", str(plain), "--mode", "incremental", "--source", clip, "--headless"], "causal_variant"),
        (["--model", str(tmp_path / "x.tflite"), "--source", clip, "--headless"], "unknown model type"),
        (["--model", model, "--source", clip, "--headless", "--output", str(tmp_path / "no" / "x.mp4")],
         "does not exist or is not writable"),
    ]
    for argv, message in cases:
        assert webcam.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in _one_error_line(err)
        assert "note:" not in err  # the --headless note is for a source that opened
    with pytest.raises(SystemExit) as e:  # argparse: a bad flag value
        webcam.main(["--model", model, "--smoothing", "median"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        annotate.main(["--model", model, "--input", "0", "--output", str(tmp_path / "o.mp4")])
    assert e.value.code == 2 and "use python -m apps.webcam for cameras" in capsys.readouterr().err


def test_a_disappearing_camera_is_retried_then_the_app_stops_cleanly(stream_artifacts, tmp_path, monkeypatch, capsys):
    import xvit_edge.streaming.capture as capture

    opener = FakeOpener([FakeCapture(list(range(12))), CaptureError("camera 0: cannot be opened (unplugged)")])
    monkeypatch.setattr(capture, "open_capture", opener)
    out = tmp_path / "live.mp4"
    code = webcam.main(["--model", str(stream_artifacts["checkpoint"]), "--source", "0", "--headless",
                        "--output", str(out), "--retries", "2", "--retry-delay", "0.01"])
    assert code == 1 and opener.calls == 3
    captured = capsys.readouterr()
    error = _one_error_line(captured.err)
    assert error == "error: camera 0: lost: no frame after 2 reconnection attempts; stopping"
    assert "warning: camera 0: no frame (disconnected or stream lost); reconnecting, attempt 1 of 2" in captured.err
    assert "processed" in captured.out and count_frames(out) >= 1


def test_no_display_is_a_clear_error(stream_artifacts, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    clip = str(write_clip(tmp_path / "ok.mp4", np.zeros((5, 32, 32, 3), np.uint8)))
    assert webcam.main(["--model", str(stream_artifacts["checkpoint"]), "--source", clip]) == 2
    assert "--headless --output" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv,expected", [
    (["--source", "clip.mp4", "--headless"], True),  # a file no one watches live: every frame
    (["--source", "clip.mp4"], False),  # in a window a file plays at its own rate, like a camera
    (["--source", "0", "--headless"], False),  # a camera or a stream is always live
    (["--source", "rtsp://host/stream", "--headless"], False),
    (["--source", "clip.mp4", "--headless", "--no-every-frame"], False),
    (["--source", "0", "--every-frame"], True),
])
def test_every_frame_default_follows_the_source(argv, expected):
    assert webcam.every_frame(webcam.build_parser().parse_args(argv)) is expected


@pytest.mark.parametrize("app", [webcam, annotate])
def test_help_explains_every_flag(app):
    parser = app.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
        for flag in action.option_strings:
            assert flag in text
    assert "exit codes" in text


def test_apps_run_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "apps.webcam", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--headless" in done.stdout


def test_annotate_runs_the_shipped_checkpoint_by_default(tmp_path, capsys):
    frames = np.random.default_rng(1).integers(0, 256, (12, 72, 96, 3), dtype=np.uint8)
    clip = write_clip(tmp_path / "in.mp4", frames)
    out, log = tmp_path / "out.mp4", tmp_path / "frames.jsonl"
    assert annotate.main(["--input", str(clip), "--output", str(out), "--json", str(log), "--threshold", "0"]) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 12 and count_frames(out) == 12
    from xvit_edge.data.synthetic import CLASSES

    assert all(r["label"] in CLASSES for r in records if r["predicted"])
    capsys.readouterr()
