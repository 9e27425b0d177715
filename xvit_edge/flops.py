"""Analytic parameter and multiply-accumulate (MAC) counts, checked against `torch.utils.flop_counter`.

The paper (and this module) counts one multiply-accumulate as one FLOP: X-ViT-B/16 at 8 frames is ~141
GFLOPs a view, 425 for the paper's 3 views. `torch.utils.flop_counter` counts 2 FLOPs per MAC.
Only matmuls and convolutions are counted (softmax, LayerNorm, GELU and adds are < 1% of a ViT).

    python -m xvit_edge.flops --preset xvit_edge_tiny --frames 4 8 16 32
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from .cli_types import HelpFormatter, int_at_least
from .config import ATTENTIONS, PRESETS, XViTConfig, get_config, space_only_baseline

log = logging.getLogger(__name__)


def count_macs(config: XViTConfig) -> dict[str, int]:
    """MACs of one forward pass on one clip, by part: patch_embed, blocks, head, and total."""
    c, n, t, hidden = config.embed_dim, config.num_tokens, config.num_frames, config.mlp_hidden
    per_token_linear = 4 * c * c + 2 * c * hidden  # qkv (3 C^2), proj (C^2), MLP (2 C hidden)
    patch = t * config.num_patches * config.in_chans * config.patch_size**2 * c
    blocks = 0
    for i in range(config.depth):
        blocks += t * n * per_token_linear
        if config.attention == "joint":
            blocks += 2 * (t * n) ** 2 * c  # q k^T and attn v over all T N tokens
            continue
        blocks += t * 2 * n * n * c  # within each frame (mixing moves channels, costs nothing)
        if i in config.summary_layers:
            blocks += t * 2 * n * t * c  # every query also attends the T summary tokens
        if config.attention == "divided":
            blocks += t * n * 4 * c * c + n * 2 * t * t * c  # time attention at each position
    if config.head == "temporal":
        seq = t + 1  # learnable class token + T frame tokens
        head = config.head_depth * (seq * per_token_linear + 2 * seq * seq * c) + c * c + c * config.num_classes
    else:
        head = c * config.num_classes
    return {"patch_embed": patch, "blocks": blocks, "head": head, "total": patch + blocks + head}


def image_model_config(config: XViTConfig) -> XViTConfig:
    """The image ViT that the video model is built from: one frame, no time modelling, a linear head."""
    return space_only_baseline(config).replace(num_frames=1)


def count_params(config: XViTConfig) -> int:
    """Parameter count, from a model built on the meta device (no memory, no init cost)."""
    from .model import XViT

    with torch.device("meta"):
        model = XViT(config)
    return sum(p.numel() for p in model.parameters())


def measure_flops(config: XViTConfig) -> int:
    """FLOPs (2 per MAC) of one forward pass counted by `torch.utils.flop_counter` on meta tensors, so even
    ViT-B with joint attention at 32 frames costs no compute or memory."""
    from torch.utils.flop_counter import FlopCounterMode

    from .model import XViT

    with torch.device("meta"):
        model = XViT(config).eval()
        x = torch.empty(1, config.num_frames, config.in_chans, config.img_size, config.img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def scaling_table(preset: str, frames: list[int], attentions: list[str]) -> list[dict]:
    """One row per (attention, T): GMACs, params, and the ratio to T passes of the image model."""
    rows = []
    for attention in attentions:
        for t in frames:
            cfg = get_config(preset, attention=attention, num_frames=t)
            macs = count_macs(cfg)["total"]
            image = count_macs(image_model_config(cfg))["total"]
            rows.append({"attention": attention, "frames": t, "gmacs": macs / 1e9, "params": count_params(cfg),
                         "ratio_to_image_x_T": macs / (t * image)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m xvit_edge.flops",
        description="Print params and GMACs (the paper's GFLOPs) vs frame count for each attention type, and the "
        "paper's claim: mixing costs T passes of the image model, linear in T.", formatter_class=HelpFormatter)
    p.add_argument("--preset", default="xvit_edge_tiny", choices=sorted(PRESETS), help="model preset to count")
    p.add_argument("--frames", type=int_at_least(1, 1024), nargs="+", default=[4, 8, 16, 32],
                   help="frame counts T to tabulate")
    p.add_argument("--attention", nargs="+", default=list(ATTENTIONS), choices=ATTENTIONS,
                   help="attention types to compare")
    p.add_argument("--verify", action="store_true",
                   help="also count every row with torch.utils.flop_counter (on meta tensors) and show both")
    args = p.parse_args(argv)

    rows = scaling_table(args.preset, args.frames, args.attention)
    header = f"{'attention':<11} {'T':>3} {'params (M)':>10} {'GMACs':>9} {'/(T x image)':>12}"
    if args.verify:
        header += f" {'flop_counter GMACs':>19}"
    print(f"preset {args.preset}: image model = {count_macs(image_model_config(get_config(args.preset)))['total'] / 1e9:.3f} GMACs/frame")
    print(header)
    for r in rows:
        line = f"{r['attention']:<11} {r['frames']:>3} {r['params'] / 1e6:>10.2f} {r['gmacs']:>9.4g} {r['ratio_to_image_x_T']:>12.3f}"
        if args.verify:
            cfg = get_config(args.preset, attention=r["attention"], num_frames=r["frames"])
            line += f" {measure_flops(cfg) / 2e9:>19.4g}"
        print(line)
    mixing = {r["frames"]: r["gmacs"] for r in rows if r["attention"] == "mixing"}
    for t in args.frames:
        if t in mixing and 2 * t in mixing:
            print(f"mixing(T={2 * t}) / mixing(T={t}) = {mixing[2 * t] / mixing[t]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
