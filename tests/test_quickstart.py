"""The README's first command, past the install: the shipped checkpoint exported to every target, a demo
clip annotated by the streaming demo, and every promised file there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_makes_every_file_it_promises(tmp_path):
    out = tmp_path / "qs"
    run = subprocess.run([sys.executable, "-m", "apps.quickstart", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    models = out / "models"
    for name in ("xvit_edge_nano_fp32_stream.pte", "xvit_edge_nano_fp32_stream.executorch.json",
                 "xvit_edge_nano_fp32_stream.onnx", "xvit_edge_nano_fp32_stream.onnx.json",
                 "xvit_edge_nano_fp16_stream.coreml.json"):
        assert (models / name).is_file() and (models / name).stat().st_size > 0, name
    assert (models / "xvit_edge_nano_fp16_stream.mlpackage" / "Manifest.json").is_file()
    clip, video, labels = out / "demo_rotate_cw.mp4", out / "annotated.mp4", out / "annotated.jsonl"
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    from xvit_edge.data.video import probe

    assert probe(video).frames == probe(clip).frames == len(rows) == 8
    assert rows[-1]["predicted"] and rows[-1]["label"]
    for path in (video, labels, models / "xvit_edge_nano_fp32_stream.pte"):
        assert str(path) in run.stdout  # it says where each file went
    assert "next:" in run.stdout and "python -m apps.webcam" in run.stdout
    # the toolchains' own output stays off the terminal
    assert "Running MIL" not in run.stdout + run.stderr and "cpuinfo" not in run.stdout + run.stderr


def test_a_rerun_replaces_only_its_own_annotation(tmp_path):
    """Run again, the quickstart replaces its own annotated video and log; a file of the user's under that name
    is left for annotate to refuse."""
    from apps.quickstart import earlier_run

    log = tmp_path / "annotated.jsonl"
    assert not earlier_run(log)
    log.write_text('{"frame": 0, "predicted": false, "label": null, "index": null, "confidence": null}\n')
    assert earlier_run(log)
    log.write_text("my notes\n")
    assert not earlier_run(log)
