"""`python -m xvit_edge.export --target {executorch,coreml,onnx,all} [--checkpoint CKPT] [--precision ...]
[--mode clip|stream]`. Without `--checkpoint`, the checkpoint shipped with the package (see `xvit_edge.assets`)."""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm import tqdm

from ..cli_types import HelpFormatter, finite_float, positive_int
from ..assets import default_checkpoint
from ..files import OVERWRITE_HELP, printable
from ..model.weights import CheckpointError, load_checkpoint
from ..quantize.checkpoint import is_quantized, load_quantized
from ..quantize.scheme import SCHEMES
from . import MODES, TARGETS, ExportError, export
from ..quiet import captured_output
from ..signals import terminate_as_interrupt
from .int8 import INT8_MIN_SQNR_DB, check_int8_scheme
from .pipeline import STAGES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xvit_edge.export",
        description="Export an xvit_edge checkpoint to ExecuTorch (.pte, XNNPACK), Core ML (.mlpackage) or ONNX, "
        "write a sidecar JSON beside each artifact, and verify it against the eager model.",
        formatter_class=HelpFormatter)
    p.add_argument("--target", required=True, choices=[*TARGETS, "all"], help="what to export; 'all' for the three")
    p.add_argument("--checkpoint",
                   help="an xvit_edge checkpoint (from python -m xvit_edge.train or xvit_edge.quantize); its config "
                   "rebuilds the model. Default: the small causal xvit_edge_nano shipped with the package, trained on "
                   "the synthetic temporal benchmark; with --precision int8, its int8 form (PTQ) shipped beside it")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"],
                   help="default: fp16 for coreml (its compute precision), fp32 for executorch and onnx; "
                   "fp16 applies to coreml only; int8 needs a quantized checkpoint (python -m xvit_edge.quantize) "
                   "for executorch and onnx; for coreml it is int8 weights and activations (W8A8) from a quantized "
                   "checkpoint (clip or stream), and weight-only int8 from a float checkpoint")
    p.add_argument("--mode", choices=MODES, default="clip",
                   help="clip: the whole-clip classifier (T frames in, logits out); stream: the incremental step of a "
                   "causal model (one frame and the state in, logits and the new state out; Core ML keeps the state "
                   "inside the model as iOS 18 states: frame in, logits out), for the streaming runtime")
    p.add_argument("--out", default="exported", help="output folder for the artifacts and their sidecar JSON files")
    p.add_argument("--samples", type=positive_int, default=4,
                   help="seeded synthetic sample clips (moving shapes, normalised as the checkpoint says; stream mode: streams "
                   "of frames+3 frames) used to verify each artifact")
    p.add_argument("--int8-min-sqnr", type=finite_float, default=INT8_MIN_SQNR_DB, metavar="DB",
                   help="int8 verification: the lowest SQNR (dB) of the artifact against the converted int8 model that "
                   "is accepted (top-1 agreement must stay >= 99%%). Trained models pass the default; a deep model "
                   "that quantizes poorly can round differently in each int8 runtime, and the refusal says how far it "
                   "is from fp32, so you can lower the bar knowingly; the bar used is written to the sidecar")
    p.add_argument("--int8-scheme", choices=SCHEMES,
                   help="int8: the activation scheme the quantized checkpoint must have been made with (refused when it "
                   "differs); static runs on every target, dynamic on ExecuTorch only. Default: the checkpoint's")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP + " (an artifact exported before, "
                   "named by the sidecar beside it, is replaced without it)")
    p.add_argument("--no-verify", action="store_true", help="skip verification (not recommended)")
    p.add_argument("--verbose", action="store_true",
                   help="show the toolchains' own output (coremltools, torch.onnx, ExecuTorch progress and warnings), "
                   "which is kept off the terminal otherwise; use it to see what a toolchain said about a failure")
    return p


def parity_line(parity: dict) -> str:
    """The verification figures of one artifact, in words."""
    if "max_abs_diff" not in parity:
        return parity["numeric"]
    over = (f"{parity['streams']} streams of {parity['frames_per_stream']} frames" if "streams" in parity
            else f"{parity['samples']} clips")
    if "bar" in parity:  # held to an SQNR bar: int8 against the converted int8 model, else the eager model
        agreement = " on the full-window frames" if "top1_over" in parity else ""
        return (f"vs {parity.get('reference', 'the eager model')}: SQNR {parity['sqnr_db']:.1f} dB, top-1 agreement "
                f"{100 * parity['top1_agreement']:.0f}%{agreement} over {over}")
    return f"max abs diff {parity['max_abs_diff']:.2e} over {over}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    terminate_as_interrupt()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    lines: list[str] = []
    try:
        with captured_output(args.verbose) as terminal:
            export_all(args, lines, terminal)
    except (ExportError, CheckpointError, ValueError, FileNotFoundError) as e:
        if lines:  # the artifacts made before the failure stay, and are named
            print("\n".join(lines))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # an artifact is moved into place only when verified: none is half-written
        if lines:
            print("\n".join(lines))
        print("interrupted" + ("; the artifacts above are complete" if lines else "; nothing was written"),
              file=sys.stderr)
        return 130
    print("\n".join(lines))
    return 0


def export_all(args: argparse.Namespace, lines: list[str], terminal) -> None:
    """Export what `args` asks for, a progress bar on `terminal`; one summary line per artifact in `lines`."""
    checkpoint = args.checkpoint or default_checkpoint(int8=args.precision == "int8")
    model, meta = load_checkpoint(checkpoint)
    targets = list(TARGETS) if args.target == "all" else [args.target]
    if args.precision and args.target != "all" and args.precision not in TARGETS[args.target].precisions:
        raise ExportError(f"--precision {args.precision} is not one {args.target} exports; it takes "
                          f"{', '.join(TARGETS[args.target].precisions)}")
    if args.precision != "int8" and is_quantized(meta.extra):  # asked for, but likely not what was meant
        lines.append(f"note: {printable(checkpoint)} is quantized; its float weights were exported as asked (add "
                     "--precision int8 for its int8 model)")
    # A target that quantizes float weights itself (Core ML) needs no int8 step, only the record of where
    # the weights came from.
    step = args.mode == "stream" and any(TARGETS[t].int8_from_checkpoint(True, "stream") for t in targets)
    quantized = (load_quantized(checkpoint, stream=step)
                 if args.precision == "int8" and is_quantized(meta.extra) else None)
    if args.precision == "int8":  # before anything is written: every target must take the checkpoint's scheme
        for target in targets:
            if TARGETS[target].int8_from_checkpoint(quantized is not None, args.mode) or args.int8_scheme:
                check_int8_scheme(TARGETS[target], quantized, args.int8_scheme)
    elif args.int8_scheme is not None:
        raise ExportError("--int8-scheme applies to --precision int8 only")
    with tqdm(total=len(targets) * len(STAGES), file=terminal, unit="stage", leave=False,
              disable=not terminal.isatty()) as bar:
        for target in targets:
            # fp16 is Core ML's alone: the other targets export their default for it
            precision = args.precision if args.precision in TARGETS[target].precisions \
                else TARGETS[target].default_precision

            def advance(stage: str, target: str = target) -> None:
                bar.set_description(f"{target}: {stage}")
                bar.update()

            art = export(model, meta.labels, meta.preprocessing, target, args.out, precision,
                         verify=not args.no_verify, samples=args.samples, mode=args.mode,
                         quantized=quantized, int8_min_sqnr=args.int8_min_sqnr, on_stage=advance,
                         overwrite=args.overwrite)
            lines.append(f"{target}: {art.path} ({precision}); {parity_line(art.report['parity'])}"
                         f"{TARGETS[target].summary(art.report, precision)}")


if __name__ == "__main__":
    sys.exit(main())
