"""What int8 costs in accuracy: fp32, PTQ int8 and QAT int8 top-1 on the held-out split, with the SQNR and
top-1 agreement of each int8 model against fp32. One function, for the project benchmark."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ..export.sidecar import tool_versions
from ..model.weights import load_checkpoint
from .checkpoint import scheme_of
from .pipeline import QuantizeOptions, load_data, quantize
from .scheme import FLOAT_OPS

log = logging.getLogger(__name__)


def quantization_benchmark(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                           out: str | os.PathLike | None = None, options: QuantizeOptions | None = None,
                           source: str = "") -> dict[str, Any]:
    """Quantize the checkpoint both ways on `data_dir` (`train/`, `val/`) and compare on `val/`.

    Returns (and, with `out`, writes as JSON) `{"fp32": {top1}, "ptq": {...}, "qat": {...}, ...}`, where each
    int8 entry has `top1`, `sqnr_db`, `top1_agreement` (against fp32 logits on the same clips), the
    batches it skipped and its op split (which ops ran in int8). `source`: where the checkpoint came from, for
    the report.
    """
    options = options or QuantizeOptions()
    options.check()
    started = time.time()
    model, meta = load_checkpoint(checkpoint)
    data = load_data(data_dir, meta.labels, meta.preprocessing, meta.config.num_frames, options,
                     meta.extra.get("train_config"))
    results: dict[str, Any] = {
        "checkpoint": Path(checkpoint).name, "source": source, "model": meta.config.name, "classes": len(meta.labels),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "tools": tool_versions(), "options": dict(vars(options)),
    }
    for mode in ("ptq", "qat"):
        t0 = time.time()
        q = quantize(model, data, mode, options)
        val = q.metrics["val"]
        results.setdefault("fp32", {"top1": val["fp32_top1"], "clips": val["clips"]})
        results[mode] = {"top1": val["int8_top1"], "sqnr_db": val["sqnr_db"],
                         "top1_agreement": val["top1_agreement"], "clips": val["clips"],
                         "skipped_batches": len(q.skipped), "ops": scheme_of(q)["ops"],
                         "seconds": round(time.time() - t0, 1)}
        if mode == "qat":
            results[mode]["history"] = q.metrics["history"]
            results[mode]["int8_vs_fake_quant_sqnr_db"] = q.metrics["int8_vs_fake_quant"]["sqnr_db"]
    # Ablations: why the adds and the cats stay float (scheme.FLOAT_OPS): the same PTQ with each in int8 too.
    for name, op in (("ptq_adds_int8", torch.ops.aten.add.Tensor), ("ptq_cats_int8", torch.ops.aten.cat.default)):
        t0 = time.time()
        val = quantize(model, data, "ptq", options, float_ops=tuple(o for o in FLOAT_OPS if o != op)).metrics["val"]
        results[name] = {"top1": val["int8_top1"], "sqnr_db": val["sqnr_db"],
                         "top1_agreement": val["top1_agreement"], "clips": val["clips"],
                         "seconds": round(time.time() - t0, 1)}
    results["elapsed_s"] = round(time.time() - started, 1)
    log.info("quantization benchmark: fp32 %.1f%%, PTQ int8 %.1f%% (%.1f dB), QAT int8 %.1f%% (%.1f dB)",
             100 * results["fp32"]["top1"], 100 * results["ptq"]["top1"], results["ptq"]["sqnr_db"],
             100 * results["qat"]["top1"], results["qat"]["sqnr_db"])
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2))
    return results
