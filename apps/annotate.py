"""`python -m apps.annotate --model ARTIFACT --input clip.mp4 --output annotated.mp4`: label every frame of a
video file.

Every frame is processed in order (none is dropped), so the output has the input's frames and the same
labels on every run; --json also writes each frame's label and confidence as JSON lines.
"""

from __future__ import annotations

import argparse
import sys

from xvit_edge.cli_types import HelpFormatter
from xvit_edge.streaming import parse_source

from .cli import EPILOG, add_common_args, run_app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.annotate", epilog=EPILOG, formatter_class=HelpFormatter,
                                description="Label every frame of a video file and write the annotated video.")
    p.add_argument("--input", required=True, metavar="VIDEO", help="the video file to annotate")
    p.add_argument("--output", required=True, metavar="VIDEO", help="the annotated .mp4 to write")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    source = parse_source(args.input)
    if isinstance(source, int) or "://" in source:
        parser.error(f"--input takes a video file, not {args.input!r}; use python -m apps.webcam for cameras and URLs")
    return run_app(args, args.input, display=False, every_frame=True, output=args.output, title="xvit_edge",
                   source_flag="--input")


if __name__ == "__main__":
    sys.exit(main())
