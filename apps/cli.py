"""What the demo apps share: their common flags, and the loop from a source to an overlay, a window and a file.

Exit codes: 0 when the source ended (or the user quit); 1 when a live source was lost mid-stream and did not
come back within the retries; 2 for bad arguments, a model that cannot be loaded, a source that cannot be
opened, yields no frame or ends before the model's first prediction, or an output that is one of the inputs;
130 when interrupted (Ctrl-C). Every failure is one line on stderr, never a stack trace.

Outputs (--output, --json) are written to a temporary file beside them and moved into place at the end, so
an existing file is replaced only by a complete one. A run that fails, or a file's run that is interrupted,
leaves nothing behind; a live source has no end of its own, so what was recorded before it was lost or
interrupted is kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path

from xvit_edge.cli_types import (nonnegative_float, nonnegative_int, positive_fraction, positive_int, probability,
                                 thread_count)
from xvit_edge.data.video import _cv2
from xvit_edge.files import (OVERWRITE_HELP, AtomicOutput, OutputError, check_output, opencv_path, printable,
                             refuse_clobbering, refuse_existing)
from xvit_edge.signals import terminate_as_interrupt
from xvit_edge.streaming import (CaptureError, FrameSource, LiveStats, ModelLoadError, Recognizer, Smoother,
                                 default_threads, run_stream)
from xvit_edge.streaming.backends import sidecar_path
from xvit_edge.streaming.capture import is_live, parse_source
from xvit_edge.streaming.recognizer import MODES
from xvit_edge.streaming.smoothing import METHODS

from .overlay import draw_overlay

EXIT_LOST, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EPILOG = ("exit codes: 0 the source ended or you quit; 1 a camera or stream was lost and did not come back "
          "within --retries; 2 bad arguments, a model that cannot be loaded, a source that cannot be opened or "
          "is too short for one prediction, or an output that is one of the inputs; 130 interrupted. Outputs are "
          "moved into place only when complete: a failed run leaves none")
QUIT_KEYS = (ord("q"), 27)  # q, Esc


class AppError(Exception):
    """A problem to report in one line, with the exit code to end on."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Model, mode, smoothing, retries and output flags, shared by every app."""
    p.add_argument("--model", metavar="ARTIFACT",
                   help="the model: an ExecuTorch .pte or ONNX .onnx from python -m xvit_edge.export (its sidecar "
                   "JSON beside it, or the sidecar's path), or an xvit_edge checkpoint .pt (run with PyTorch). "
                   "Default: the causal xvit_edge_nano checkpoint shipped with the package (12 synthetic classes)")
    p.add_argument("--mode", choices=MODES,
                   help="clip: run the whole-clip model over the last T frames every --stride frames; incremental: "
                   "encode each new frame once and carry the state (a stream-mode export, or a causal checkpoint). "
                   "Default: incremental when the model offers it, else clip")
    p.add_argument("--stride", type=positive_int, default=1, help="clip mode: run the model every N frames")
    p.add_argument("--threads", type=thread_count, default=default_threads(),
                   help="inference threads; the default leaves one core to the capture thread's decoding")
    p.add_argument("--smoothing", choices=METHODS, default="ema",
                   help="temporal smoothing of the scores: ema (moving average of probabilities), vote (majority of "
                   "the last --window answers), none")
    p.add_argument("--alpha", type=positive_fraction, default=0.3,
                   help="ema: weight of the newest probabilities, in (0, 1]")
    p.add_argument("--window", type=positive_int, default=5, help="vote: how many recent answers vote")
    p.add_argument("--threshold", type=probability, default=0.5,
                   help="confidence below which the answer is 'no action', in [0, 1]")
    p.add_argument("--retries", type=nonnegative_int, default=3,
                   help="a lost camera or stream is reopened this many times (a file: undecodable frames skipped "
                   "in a row) before the app stops")
    p.add_argument("--retry-delay", type=nonnegative_float, default=1.0, help="seconds between reconnection attempts")
    p.add_argument("--max-frames", type=positive_int, help="stop after this many processed frames")
    p.add_argument("--json", metavar="PATH", help="also write one JSON line per processed frame (label, confidence)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _configure_logging() -> None:
    """Our warnings (a reconnection, a skipped frame) as one line each; the toolchains' own notices only when
    they are errors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR)
    logging.getLogger("xvit_edge").setLevel(logging.WARNING)


def _check_outputs(args: argparse.Namespace, source: str, source_flag: str, output: str | None) -> None:
    """Every output writable, none of them an input (by any path) nor each other: an AppError otherwise."""
    outputs = {"--output": output, "--json": args.json}
    parsed = parse_source(source)
    inputs = {source_flag: None if is_live(parsed) else parsed, "--model": args.model}
    if args.model and Path(args.model).suffix in (".pte", ".onnx"):
        inputs["the model's sidecar"] = sidecar_path(Path(args.model))
    try:
        for what, path in outputs.items():
            if path is not None:
                check_output(path, what)
        refuse_clobbering(outputs, inputs)
        refuse_existing(outputs, args.overwrite)
    except OutputError as e:
        raise AppError(str(e)) from e


def _open_window(name: str) -> None:
    """A window to show frames in, or an AppError when this machine has no display or OpenCV no GUI."""
    cv2 = _cv2()
    hint = "run with --headless --output annotated.mp4"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise AppError(f"no display (DISPLAY is not set); {hint}")
    try:
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
    except cv2.error as e:
        raise AppError(f"this OpenCV cannot open windows (a headless build?): {hint}") from e


class _Writer:
    """The annotated video, opened on the first frame (its size is known then), written to a temporary file
    beside `path` (`output`) that the caller commits or discards."""

    def __init__(self, path: str | None, fps: float) -> None:
        self.path, self.fps, self._writer, self.frames = path, fps if fps > 0 else 25.0, None, 0
        self.output: AtomicOutput | None = None
        self._names = ExitStack()  # the plain name OpenCV writes through, while it writes

    def write(self, bgr) -> None:
        if self.path is None:
            return
        if self._writer is None:
            cv2 = _cv2()
            h, w = bgr.shape[:2]
            self.output = AtomicOutput(self.path)
            try:
                name = self._names.enter_context(opencv_path(self.output.tmp))
            except OSError as e:
                raise AppError(f"cannot write {printable(self.path)}: its folder's name is not valid UTF-8 and no "
                               f"plain-named link to it can be made ({e.strerror})") from e
            self._writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise AppError(f"cannot write {printable(self.path)}: OpenCV has no mp4v writer for it")
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._names.close()


def _settle(outputs: list[AtomicOutput | None], keep: bool) -> None:
    """Move the finished outputs into place, or remove them (all of them when one cannot be moved)."""
    pending = [out for out in outputs if out is not None]
    try:
        for out in pending:
            out.commit() if keep else out.discard()
    except OSError:
        for out in pending:
            out.discard()
        raise


def _load(args: argparse.Namespace) -> tuple[Recognizer, Smoother]:
    try:
        from xvit_edge.assets import default_checkpoint

        recognizer = Recognizer.load(args.model or default_checkpoint(), args.mode, args.stride, args.threads)
        # Labels as text: one with bytes that are not UTF-8 would crash OpenCV's drawing and the printing.
        labels = [printable(label) for label in recognizer.labels]
        return recognizer, Smoother(labels, args.smoothing, args.threshold, args.alpha, args.window)
    except (ModelLoadError, ValueError, FileNotFoundError) as e:
        raise AppError(str(e)) from e


def run_app(args: argparse.Namespace, source: str, *, display: bool, every_frame: bool, output: str | None,
            title: str, source_flag: str = "--source", note: str | None = None) -> int:
    """Stream `source` through the model; overlay each processed frame, show it and/or write it. `note` is
    printed once the source has opened (after an error it would only be noise)."""
    terminate_as_interrupt()  # a killed run discards its temporary outputs as an interrupted one does
    _configure_logging()
    cv2 = _cv2()
    log_out: AtomicOutput | None = None
    log_file = None
    capture = FrameSource(source, every_frame=every_frame, retries=args.retries, retry_delay=args.retry_delay)
    writer = _Writer(output, 0.0)
    processed, predicted, quit_, last_label, last_stats = 0, False, False, None, None
    code: int | None = None  # None while running: an unexpected exception discards the outputs
    kept = False
    try:
        _check_outputs(args, source, source_flag, output)
        recognizer, smoother = _load(args)
        t = recognizer.num_frames
        if args.max_frames is not None and args.max_frames < t:
            raise AppError(f"--max-frames {args.max_frames} is fewer than the {t} frames the model needs for one "
                           "prediction")
        if display:
            _open_window(title)
        try:
            capture.start()
        except CaptureError as e:
            raise AppError(str(e)) from e
        if note:
            print(f"note: {note}", file=sys.stderr)
        writer.fps = capture.fps if capture.fps > 0 else 25.0
        if args.json:
            log_out = AtomicOutput(args.json)
            log_file = open(log_out.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
        for result in run_stream(recognizer, capture, smoother, LiveStats(), args.max_frames):
            processed += 1
            predicted = predicted or result.prediction is not None
            decision, last_stats = result.decision, result.stats
            draw_overlay(result.frame.bgr, decision, result.stats,
                         f"warming up {min(recognizer.frames_seen, t)}/{t}")
            writer.write(result.frame.bgr)
            if log_file is not None:
                log_file.write(json.dumps({
                    "frame": result.frame.index, "predicted": result.prediction is not None,
                    "label": decision.label if decision else None, "index": decision.index if decision else None,
                    "confidence": round(decision.confidence, 6) if decision else None}) + "\n")
            if decision is not None and decision.label != last_label:
                print(f"frame {result.frame.index}: {decision.label} ({decision.confidence:.0%})", flush=True)
                last_label = decision.label
            if display:
                cv2.imshow(title, result.frame.bgr)
                if cv2.waitKey(1) & 0xFF in QUIT_KEYS:
                    quit_ = True
                    break
        if processed and not predicted and not quit_:  # a silent run would look like a video without actions
            raise AppError(f"no prediction: {capture.name} ended after {processed} frame(s), the model needs {t}"
                           + ("; nothing was written" if output or args.json else ""))
        code = 0
    except CaptureError as e:  # lost mid-stream (or a file whose frames never decode)
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_LOST if processed else EXIT_USAGE
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        code = e.code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        print("interrupted" + ("" if capture.live or not (output or args.json) else "; nothing was written"),
              file=sys.stderr)
    finally:
        capture.stop()
        writer.close()
        if log_file is not None:
            log_file.close()
        # A live source has no end of its own: what it recorded before it was lost or interrupted is kept.
        kept = code == 0 or (capture.live and code in (EXIT_LOST, EXIT_INTERRUPTED))
        try:
            _settle([writer.output, log_out], kept)
        except OSError as e:
            print(f"error: cannot move the finished output into place: {e}", file=sys.stderr)
            code, kept = EXIT_USAGE, False
        if display:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    if last_stats is not None:
        stats = f"processed {processed} frames: {last_stats.line()}"
        if capture.end_message:
            stats += f"; {capture.end_message}"
        if writer.frames and kept:
            stats += f"; wrote {writer.frames} annotated frames to {printable(output)}"
        if log_out is not None and kept:
            stats += f"; wrote {processed} JSON lines to {printable(args.json)}"
        print(stats, flush=True)
    return code
