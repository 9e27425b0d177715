"""Section 1: params, MACs and latency against the frame count for each attention type.

The paper's claim, measured: mixing costs what T passes of the image model cost (linear in T), while
divided and joint space-time attention cost more, joint quadratically.
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from ..config import ATTENTIONS, get_config
from ..flops import count_macs, count_params, image_model_config
from ..model import XViT
from .timing import time_call

log = logging.getLogger(__name__)


def run(preset: str, frames: list[int], threads: int, repeats: int, warmup: int) -> dict:
    """Rows of {attention, frames, params, gmacs, latency, achieved GFLOP/s}, plus the image model."""
    torch.manual_seed(0)
    rows = []
    jobs = [("image", 1)] + [(a, t) for a in ATTENTIONS for t in frames]
    for attention, t in tqdm(jobs, desc="complexity", leave=False):
        cfg = image_model_config(get_config(preset)) if attention == "image" else \
            get_config(preset, attention=attention, num_frames=t)
        model = XViT(cfg).eval()
        x = torch.randn(1, t, 3, cfg.img_size, cfg.img_size)
        with torch.inference_mode():
            timing = time_call(lambda: model(x), repeats=repeats, warmup=warmup, threads=threads)
        macs = count_macs(cfg)["total"]
        rows.append({"attention": attention, "frames": t, "params": count_params(cfg), "gmacs": macs / 1e9,
                     "gflops_achieved": 2 * macs / (timing.median_ms * 1e-3) / 1e9, **timing.to_dict()})
        log.info("%s T=%d: %.2f ms", attention, t, timing.median_ms)
    image = rows[0]
    for r in rows[1:]:
        r["latency_over_T_x_image"] = r["median_ms"] / (r["frames"] * image["median_ms"])
        r["macs_over_T_x_image"] = r["gmacs"] / (r["frames"] * image["gmacs"])
    return {"preset": preset, "threads": threads, "image_model": image, "rows": rows[1:]}


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    image = result["image_model"]
    for attention in ATTENTIONS:
        rows = [r for r in result["rows"] if r["attention"] == attention]
        t = [r["frames"] for r in rows]
        axes[0].plot(t, [r["gmacs"] for r in rows], "o-", label=attention)
        axes[1].plot(t, [r["median_ms"] for r in rows], "o-", label=attention)
    t = sorted({r["frames"] for r in result["rows"]})
    axes[0].plot(t, [x * image["gmacs"] for x in t], "k--", label="T x image model")
    axes[1].plot(t, [x * image["median_ms"] for x in t], "k--", label="T x image model")
    for ax, ylabel in zip(axes, ("GMACs per clip", f"median latency (ms, {result['threads']} threads)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("frames T")
        ax.set_ylabel(ylabel)
        ax.set_xticks(t, [str(x) for x in t])
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result['preset']}: cost vs frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
