"""`python -m apps.webcam --model ARTIFACT --source 0`: live action recognition with an overlay.

The source is a camera index, a video file or a stream URL. Capture runs on its own thread and inference
always takes the newest frame (stale frames are dropped and counted), unless --every-frame (the default for
a video file with --headless: no one watches it live). A window shows each processed frame with the label,
its confidence, fps, latency and dropped frames (q or Esc quits); --headless --output annotated.mp4 writes the
same frames to a file on machines without a display.
"""

from __future__ import annotations

import argparse
import sys

from xvit_edge.cli_types import HelpFormatter
from xvit_edge.streaming.capture import is_live, parse_source

from .cli import EPILOG, add_common_args, run_app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.webcam", epilog=EPILOG, formatter_class=HelpFormatter,
                                description="Live action recognition from a camera, a video file or a stream URL, "
                                "with an overlay.")
    p.add_argument("--source", default="0",
                   help="camera index (0, 1, ...), video file, or stream URL (rtsp://, http://, ...)")
    p.add_argument("--headless", action="store_true", help="no window (for machines without a display)")
    p.add_argument("--output", metavar="VIDEO",
                   help="write the annotated frames to this .mp4 (with or without --headless); without "
                   "--every-frame only the frames that were processed are written")
    p.add_argument("--every-frame", action=argparse.BooleanOptionalAction, default=None,
                   help="process every frame, dropping none (for files: deterministic output, every frame written). "
                   "Default: on for a video file with --headless, since no one watches it live; otherwise the "
                   "newest frame is taken and a file plays at its own frame rate, like a camera "
                   "(--no-every-frame does that headless too)")
    add_common_args(p)
    return p


def every_frame(args: argparse.Namespace) -> bool:
    """--every-frame as given, else on for a file played headless (off for a camera, a stream or a window)."""
    if args.every_frame is not None:
        return args.every_frame
    return args.headless and not is_live(parse_source(args.source))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.headless and not args.output and not args.json
    return run_app(args, args.source, display=not args.headless, every_frame=every_frame(args), output=args.output,
                   title="xvit_edge",
                   note="--headless without --output or --json shows only label changes" if quiet else None)


if __name__ == "__main__":
    sys.exit(main())
