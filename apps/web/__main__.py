"""`python -m apps.web [--model ARTIFACT] [--port N]`: serve the browser demo on this machine and print its URL.

The page runs the model itself (onnxruntime-web, WASM or WebGPU): the server only hands out files. Without
--model, the shipped checkpoint's stream step is exported to ONNX once into a cache folder and reused.
Exit codes: 0 when stopped with Ctrl-C; 2 for bad arguments, a model that cannot be served (missing, not a
stream-mode ONNX export, no sidecar or one that does not match), onnxruntime-web not installed, or an address
that cannot be bound. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlencode

from xvit_edge.cli_types import HelpFormatter, positive_fraction, positive_int, probability, thread_count

from .server import WebError, check_model, check_runtime, make_server, tls_context

EXIT_USAGE = 2
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_cache() -> Path:
    """Where the shipped checkpoint's export is kept: $XDG_CACHE_HOME/xvit_edge/web (~/.cache/... by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xvit_edge" / "web"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.web",
                                description="Serve the browser demo on this machine and print its URL: a page that "
                                "runs a stream-mode ONNX step in the browser (onnxruntime-web, WASM or WebGPU) on the "
                                "camera or a video file.",
                                formatter_class=HelpFormatter,
                                epilog="exit codes: 0 stopped with Ctrl-C; 2 bad arguments, a model that cannot be "
                                "served, onnxruntime-web missing, or an address that cannot be bound. See docs/web.md "
                                "for opening the page on a phone")
    p.add_argument("--model", metavar="ARTIFACT",
                   help="a stream-mode .onnx from python -m xvit_edge.export --target onnx --mode stream (fp32 or "
                   "int8), with the sidecar JSON the exporter writes beside it (or the sidecar's path). Default: the "
                   "shipped xvit_edge_nano checkpoint's step, exported once into --cache")
    p.add_argument("--precision", choices=("fp32", "int8"),
                   help="without --model: export the shipped checkpoint (fp32, the default) or its int8 form (PTQ); "
                   "with --model, the artifact's own precision is served")
    p.add_argument("--cache", metavar="DIR", type=Path, default=default_cache(),
                   help="without --model: the folder the shipped checkpoint's export is written to and reused from")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for every interface (another device on your network: it "
                   "needs https for the camera, see --cert)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    p.add_argument("--cert", metavar="PEM", help="serve https with this certificate (with --key)")
    p.add_argument("--key", metavar="PEM", help="the private key of --cert")
    g = p.add_argument_group("page settings", "passed to the page in the URL printed (the page's defaults are the "
                             "Python apps' ones)")
    g.add_argument("--ep", choices=("auto", "wasm", "webgpu"),
                   help="onnxruntime-web execution provider; the page's default, auto, takes WebGPU when the browser "
                   "has it, else WASM")
    g.add_argument("--threads", type=thread_count,
                   help="WASM threads; the page's default is up to 4 (cross-origin isolated pages only)")
    g.add_argument("--smoothing", choices=("ema", "vote", "none"), help="temporal smoothing of the scores (page "
                   "default ema)")
    g.add_argument("--alpha", type=positive_fraction, help="ema: weight of the newest probabilities (page default 0.3)")
    g.add_argument("--window", type=positive_int, help="vote: how many recent answers vote (page default 5)")
    g.add_argument("--threshold", type=probability,
                   help="confidence below which the answer is 'no action' (page default 0.5)")
    return p


def export_default(precision: str, cache: Path) -> Path:
    """The shipped checkpoint's stream step as ONNX in `cache` (exported and verified once, then reused; a
    folder per checkpoint digest, so a new checkpoint is exported anew). Returns the artifact's path."""
    from xvit_edge.assets import default_checkpoint
    from xvit_edge.export import ExportError, export
    from xvit_edge.export.sidecar import artifact_digest
    from xvit_edge.model.weights import CheckpointError, load_checkpoint
    from xvit_edge.quiet import captured_output

    try:
        checkpoint = default_checkpoint(int8=precision == "int8")
    except FileNotFoundError as e:
        raise WebError(str(e)) from e
    out = cache / f"{precision}-{artifact_digest(checkpoint)[:16]}"
    for found in sorted(out.glob("*.onnx")):
        try:
            return check_model(found).artifact
        except WebError as e:
            logging.getLogger(__name__).warning("exporting again: %s", e)
    print(f"exporting the shipped checkpoint's stream step ({precision}) to {out} (once) ...", file=sys.stderr,
          flush=True)
    try:
        with captured_output(verbose=False):
            model, meta = load_checkpoint(checkpoint)
            quantized = None
            if precision == "int8":
                from xvit_edge.quantize.checkpoint import load_quantized

                quantized = load_quantized(checkpoint, stream=True)
            art = export(model, meta.labels, meta.preprocessing, "onnx", out, precision, mode="stream",
                         quantized=quantized)
    except (ExportError, CheckpointError, ValueError, OSError) as e:
        raise WebError(f"cannot export the shipped checkpoint: {e}") from e
    return art.path


def page_query(args: argparse.Namespace) -> str:
    """The page settings given on the command line, as the URL's query."""
    keys = ("ep", "threads", "smoothing", "alpha", "window", "threshold")
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    return f"?{urlencode(given)}" if given else ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    if args.model and args.precision:
        parser.error("--precision picks the shipped checkpoint's export; --model is served at its own precision")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        version = check_runtime()
        tls = tls_context(args.cert, args.key) if args.cert else None
        artifact = Path(args.model) if args.model else export_default(args.precision or "fp32", args.cache)
        model = check_model(artifact)
        try:
            server = make_server(model, args.host, args.port, tls=tls)
        except OSError as e:
            raise WebError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); pick another --port") from e
    except WebError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # the export goes into place only when complete: the cache holds no half of one
        print("interrupted before serving", file=sys.stderr)
        return 130
    scheme = "https" if tls else "http"
    shown = args.host if args.host not in ("0.0.0.0", "::") else socket.gethostname()
    url = f"{scheme}://{shown if ':' not in shown else f'[{shown}]'}:{server.port}/{page_query(args)}"
    print(f"serving {model.artifact.name} ({model.meta.get('precision', 'fp32')}, onnxruntime-web {version})")
    print(f"open {url}", flush=True)
    if args.host not in LOOPBACK and not tls:
        print("note: a browser on another device opens the camera only over https or on localhost: see --cert, or "
              "docs/web.md for a port forward", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
