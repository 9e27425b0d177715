"""`python -m xvit_edge.bench [--quick]`: every benchmark, side by side in one process and one run.

Writes `bench/results.json`, PNG plots and `bench/results.md` (the table the README shows). Sections:
1. complexity: params, MACs and latency vs frames for each attention type;
2. deployment: latency and size of eager, ExecuTorch and ONNX fp32 and int8 with each thread count; Core ML
   size and ops; for the preset (random weights) and for the shipped default checkpoint;
3. accuracy: quoted from every `accuracy*.json` and `quantization*.json`, written by
   `python -m xvit_edge.bench.accuracy [--quantize MODEL]` and `python -m xvit_edge.bench.quantization` (they
   train models: far longer than this command);
4. streaming: per-frame cost of incremental vs clip mode, end-to-end fps on a real 720p clip, memory over a long stream;
5. the machine's GEMM peak, and each model's achieved GFLOP/s as a fraction of it.
6. web (full run only): the browser demo's model latency and fps in headless Chromium, WASM (`web`).
Each figure records how it was measured (warm-up, repeats, threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from ..cli_types import HelpFormatter, thread_count
from ..assets import default_checkpoint
from ..config import PRESETS
from ..files import OutputError, check_output, printable, write_text_atomic
from ..quiet import quiet_toolchains
from . import complexity, deployment, peak, streaming, web
from .report import check_readme, markdown, update_readme

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="every section, cut to finish in under 3 minutes: T in 4, 8, 16 and 3 timed runs after 1 "
                   "warm-up; deployment of the default checkpoint's clip model only; streaming in eager only, 40 frames end to "
                   "end, a 2,000-frame soak")
    p.add_argument("--preset", default="xvit_edge_tiny", choices=sorted(PRESETS), help="model to benchmark")
    p.add_argument("--out", default="bench", help="folder for results.json, results.md and the plots")
    p.add_argument("--threads", type=thread_count, nargs="+", default=[1, 2], help="torch thread counts to measure")
    p.add_argument("--update-readme", metavar="README", help="replace the results block of this README")
    p.add_argument("--verbose", action="store_true",
                   help="show the export toolchains' own warnings and log lines, hidden by default")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: re-read results.json (and the accuracy files) in --out and rewrite "
                   "results.md (and --update-readme), e.g. after a new accuracy run")
    return p


def _trained_results(out: Path) -> dict:
    """Results of training runs, made far longer than this command: every accuracy*.json and the int8
    comparison in `out`, quoted as they are."""
    def read(pattern: str) -> list[dict] | None:
        return [json.loads(p.read_text()) for p in sorted(out.glob(pattern))] or None

    return {"accuracy": read("accuracy*.json"), "quantization": read("quantization*.json")}


def _report_only(out: Path, readme: str | None) -> int:
    path = out / "results.json"
    if not path.is_file():
        raise ValueError(f"{printable(path)} does not exist; run python -m xvit_edge.bench first")
    try:  # a results.json from elsewhere, or edited: a line naming it, not a KeyError
        results = {**json.loads(path.read_text()), **_trained_results(out)}
        table = markdown(results)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{printable(path)}: not a results file of python -m xvit_edge.bench ({type(e).__name__}: "
                         f"{e}); run the benchmark again") from e
    write_text_atomic(path, json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", table)
    if readme:
        update_readme(Path(readme), table)
    print(table)
    return 0


def check_outputs(out: Path, readme: str | None) -> None:
    """Refuse, before measuring, an --out that is a file or cannot be made, and an --update-readme that cannot be
    updated (ValueError, OSError)."""
    if readme:
        check_readme(Path(readme))
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {printable(out)} is a file; name a folder for the results")
    out.mkdir(parents=True, exist_ok=True)
    check_output(out / "results.json", "--out")


def measure_all(args: argparse.Namespace, out: Path) -> dict:
    """Every section, in one process; the figures and where the run's time went."""
    frames = [4, 8, 16] if args.quick else [4, 8, 16, 32]
    repeats, warmup = (3, 1) if args.quick else (10, 2)
    started = time.time()
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": torch.get_num_threads(), "torch": torch.__version__},
        "settings": {"quick": args.quick, "preset": args.preset, "repeats": repeats, "warmup": warmup},
        "peak": {str(t): peak.gemm_gflops(t, repeats=repeats, warmup=warmup) for t in args.threads},
    }
    max_threads = max(args.threads)
    seconds = results["section_seconds"] = {"peak": time.time() - started}  # where the run's time went
    mark = time.time()

    def lap(name: str) -> None:
        nonlocal mark
        seconds[name] = time.time() - mark
        mark = time.time()
        log.info("%s done in %.0f s", name, seconds[name])

    results["complexity"] = complexity.run(args.preset, frames, max_threads, repeats, warmup)
    lap("complexity")
    # --quick times the default checkpoint only, its clip model only: what `python -m xvit_edge.export` exports
    # when given no checkpoint, and small enough for its exports to fit the time budget. The full run adds its
    # streaming step and the preset.
    if not args.quick:
        results["deployment"] = deployment.run(args.preset, args.threads, repeats, warmup)
    lap("deployment")
    try:
        results["deployment_default"] = deployment.run(args.preset, args.threads, repeats, warmup,
                                                       checkpoint=default_checkpoint(),
                                                       int8_checkpoint_path=default_checkpoint(int8=True),
                                                       modes=("clip",) if args.quick else ("clip", "stream"))
    except FileNotFoundError as e:
        log.warning("deployment of the default checkpoint skipped: %s", e)
    lap("deployment_default")
    results["streaming"] = streaming.run(args.preset, args.threads, repeats, warmup, args.quick)
    lap("streaming")
    if not args.quick:  # the browser demo's page (apps/web) in headless Chromium: about 2 minutes more
        try:
            results["web"] = web.run(args.preset, args.threads)
        except web.Unavailable as e:
            log.warning("web section skipped: %s", e)
        lap("web")
    peak_gflops = results["peak"][str(max_threads)]["gflops"]
    for row in results["complexity"]["rows"] + [results["complexity"]["image_model"]]:
        row["fraction_of_peak"] = row["gflops_achieved"] / peak_gflops
    results.update(_trained_results(out))
    results["elapsed_s"] = time.time() - started
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    try:
        if args.report_only:
            return _report_only(out, args.update_readme)
        check_outputs(out, args.update_readme)
        with quiet_toolchains(args.verbose):
            results = measure_all(args, out)
        write_text_atomic(out / "results.json", json.dumps(results, indent=2))
        complexity.plot(results["complexity"], out / "complexity.png")
        streaming.plot(results["streaming"], out / "streaming.png")
        table = markdown(results)
        write_text_atomic(out / "results.md", table)
        if args.update_readme:
            update_readme(Path(args.update_readme), table)
    except (OSError, ValueError) as e:  # OutputError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'complexity.png'}, {out / 'streaming.png'} "
          f"in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
