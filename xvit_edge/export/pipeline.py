"""`export()`: validate -> subject -> stage in a temporary folder -> the target writes -> the target checks and
runs it -> the subject compares -> sidecar -> move into place. What is exported is the subject's business
(`subject`, `modes`, `parity`), where it goes the target's (`target`, `targets`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Preprocessing
from ..files import refuse_existing
from ..model import XViT
from .errors import ExportError
from .int8 import INT8_MIN_SQNR_DB
from .modes import MODES, ClipMode, StreamMode
from .sidecar import artifact_digest, build_sidecar, names_artifact, write_sidecar
from .subject import Subject, build_subject
from .target import Target
from .targets import TARGETS, get_target

if TYPE_CHECKING:
    from ..quantize.checkpoint import QuantizedCheckpoint

PRECISIONS = ("fp32", "fp16", "int8")
# What `on_stage` is told, in order, as an export goes.
STAGES = ("convert", "check", "verify", "sidecar")


@dataclass
class Artifact:
    target: str
    path: Path
    sidecar: Path
    report: dict


def export(model: XViT, labels: list[str], preprocessing: Preprocessing, target: str, out_dir: str | os.PathLike,
           precision: str = "fp32", verify: bool = True, samples: int = 4, name: str | None = None,
           mode: str = "clip", quantized: QuantizedCheckpoint | None = None,
           int8_min_sqnr: float = INT8_MIN_SQNR_DB, on_stage: Callable[[str], None] | None = None,
           overwrite: bool = False) -> Artifact:
    """Write one artifact and its sidecar into `out_dir`; verified against `model` unless `verify=False`.

    `mode="stream"` exports the incremental step of a causal model (`samples` streams of T + 3 frames verify
    it); `mode="clip"` the whole-clip model (`samples` clips). The samples are seeded synthetic videos,
    normalised with `preprocessing` (see `verify.sample_inputs`).

    int8: `quantized` is `xvit_edge.quantize.load_quantized(checkpoint)` (with `stream=True` for stream mode);
    ExecuTorch and ONNX export its converted graph (clip) or converted step (stream) and are verified against
    it; Core ML quantizes `model`'s weights (weight-only). See `int8`. `int8_min_sqnr` lowers or raises the
    SQNR bar of that check; the bar used is recorded in the sidecar.

    `on_stage(name)` is called as each of `STAGES` begins (for a progress bar).

    Everything is built in a temporary folder and moved into place only once it has verified, so a
    failure leaves nothing partial behind. An artifact exported before (its sidecar beside it names it) is
    replaced; any other file of that name is refused before conversion, unless `overwrite`.
    """
    stage_begins = on_stage or (lambda name: None)
    chosen, kind = validate(target, precision, mode)
    subject = build_subject(model, kind, precision, chosen, labels, preprocessing, samples, quantized, int8_min_sqnr)
    name = name or subject.name
    filename = name + chosen.extension
    final_sidecar = Path(out_dir) / f"{name}.{chosen.name}.json"
    refuse_existing({"the artifact": Path(out_dir) / filename, "its sidecar": final_sidecar}, overwrite,
                    ours=lambda _: names_artifact(final_sidecar, filename))
    with staging(Path(out_dir)) as stage:
        path = stage / filename
        stage_begins("convert")
        report = chosen.write(subject, path)
        stage_begins("check")
        chosen.check(report, subject)
        stage_begins("verify")
        report.update(run_and_compare(chosen, path, subject, report) if verify
                      else {"parity": {"numeric": "skipped (--no-verify)"}})
        stage_begins("sidecar")
        sidecar = stage / final_sidecar.name
        write_sidecar(sidecar, build_sidecar(filename, chosen, subject, report, artifact_digest(path)))
        final, final_sidecar = move_into_place(Path(out_dir), path, sidecar)
    return Artifact(chosen.name, final, final_sidecar, report)


def validate(target: str, precision: str, mode: str) -> tuple[Target, ClipMode | StreamMode]:
    """The target and mode named, once the combination is known to exist and the target's packages are there."""
    chosen = get_target(target)
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not available; use fp32, int8, or fp16 for Core ML")
    if precision not in chosen.precisions:
        having = [t.title for t in TARGETS.values() if precision in t.precisions]
        lacking = [t.title for t in TARGETS.values() if precision not in t.precisions]
        raise ExportError(f"{precision} is a {' and '.join(having)} compute precision; {' and '.join(lacking)} "
                          f"export {' or '.join(chosen.precisions)}")
    if mode not in MODES:
        raise ExportError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    chosen.require()
    return chosen, MODES[mode]


def run_and_compare(target: Target, path: Path, subject: Subject, report: dict[str, Any]) -> dict[str, Any]:
    """The artifact run here over the subject's samples and held to its bar; or, where the target cannot run
    it here, what was checked instead."""
    call = target.runner(path)
    if call is None:
        return {"parity": target.not_run(report)}
    result = subject.verify(target.name, call)
    result["parity"]["run_with"] = target.runs_on
    return result


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder inside `out` (so the final move is a rename), removed whatever happens."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    except OSError as e:
        raise ExportError(f"cannot write to {out}: {e.strerror or e}") from e
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def move_into_place(out: Path, *paths: Path) -> list[Path]:
    """Move verified files from the staging folder into `out`, replacing earlier exports of the same name."""
    finals = []
    for src in paths:
        dst = out / src.name
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        shutil.move(str(src), dst)
        finals.append(dst)
    return finals
