"""`python -m apps.quickstart`: the whole chain on the checkpoint shipped with the package, in one command.

1. Export its streaming step to Core ML (a stateful .mlpackage for iOS 18+), ExecuTorch (.pte, XNNPACK) and
   ONNX, each verified the way `python -m xvit_edge.export` verifies it, with its sidecar JSON.
2. Render a demo clip of one of the classes it was trained on (the synthetic temporal benchmark), or take
   `--clip` (any video: the shipped model knows only the synthetic classes).
3. Run the streaming demo headless on the clip with the ExecuTorch step, writing the annotated video and
   each frame's label as JSON lines.
Then it prints where every file went and what to run next.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from xvit_edge.cli_types import HelpFormatter

DEMO_CLASS = "rotate_cw"
# The benchmark's clips are 16 frames, of which the model sees every second one (T = 8 segments): the demo
# clip is one such event at that pace, so that the step's last frame sees what a trained clip looks like.
DEMO_FRAMES, DEMO_STEP, DEMO_SIZE, DEMO_FPS = 16, 2, 128, 8.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.quickstart", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", default="quickstart", help="folder for the exported models, the clip and the "
                   "annotated video (created; files of the same names in it are replaced)")
    p.add_argument("--clip", help="a video to annotate instead of the rendered demo clip")
    p.add_argument("--verbose", action="store_true", help="show the export toolchains' own output")
    return p


def demo_clip(path: Path) -> Path:
    """A clip of `DEMO_CLASS`, rendered by the synthetic benchmark's generator (seeded: the same every run)."""
    from xvit_edge.data.synthetic import clip_rng, generate_clip, write_video

    frames = generate_clip(DEMO_CLASS, clip_rng(7, "val", DEMO_CLASS, 5000), DEMO_FRAMES, DEMO_SIZE)
    write_video(path, np.asarray(frames)[::DEMO_STEP], DEMO_FPS)
    return path


def earlier_run(labels: Path) -> bool:
    """Whether `labels` is this quickstart's own per-frame log from an earlier run (its outputs may then be
    replaced; anything else of that name is left for annotate to refuse)."""
    try:
        first = json.loads(labels.read_text(encoding="utf-8").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return isinstance(first, dict) and {"frame", "predicted", "label"} <= first.keys()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from xvit_edge.export.__main__ import main as export_main

    out = Path(args.out)
    models = out / "models"
    print(f"1/3 exporting the shipped checkpoint's streaming step to Core ML, ExecuTorch and ONNX into {models}/")
    code = export_main(["--target", "all", "--mode", "stream", "--out", str(models)]
                       + (["--verbose"] if args.verbose else []))
    if code:
        return code
    if args.clip:
        clip = Path(args.clip)
        print(f"2/3 annotating your clip {clip}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        clip = demo_clip(out / f"demo_{DEMO_CLASS}.mp4")
        print(f"2/3 rendered a demo clip of '{DEMO_CLASS}': {clip}")
    step = models / "xvit_edge_nano_fp32_stream.pte"
    annotated, labels = out / "annotated.mp4", out / "annotated.jsonl"
    print(f"3/3 streaming it frame by frame through {step.name} (headless)")
    # A fresh process, as a user would run it: this one's ExecuTorch thread pool was sized by the export.
    code = subprocess.run([sys.executable, "-m", "apps.annotate", "--model", str(step), "--input", str(clip),
                           "--output", str(annotated), "--json", str(labels)]
                          + (["--overwrite"] if earlier_run(labels) else [])).returncode
    if code:
        return code
    last = json.loads(labels.read_text().splitlines()[-1])
    said = f"{last['label']} ({100 * last['confidence']:.0f}%)" if last.get("label") else "no prediction"
    print(f"\ndone: on its last frame the model says {said}. The annotated video is {annotated}, each frame's "
          f"label in {labels}.\nnext:\n"
          f"  python -m apps.webcam --model {step} --source 0          # your camera, in a window\n"
          f"  python -m apps.annotate --model {models / 'xvit_edge_nano_fp32_stream.onnx'} --input YOUR.mp4 "
          "--output out.mp4\n"
          "  python -m xvit_edge.export --help                         # your own checkpoint, int8, clip mode\n"
          f"  the Core ML model for an iOS 18 app: {models / 'xvit_edge_nano_fp16_stream.mlpackage'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
