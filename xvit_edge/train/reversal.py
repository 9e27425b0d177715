"""Time-reversal pairs: classes that are each other played backwards, trained as contrasting pairs.

Some classes differ only in the order of their frames: `open` / `close`, `put in` / `take out`, the synthetic
benchmark's `rotate_cw` / `rotate_ccw`. For a clip of such a class, its frames in reverse order are a clip of
the partner class, so each training batch gets, beside every such clip, its time reversal labelled with the
partner (`with_time_reversed`).

Why in the same batch, not as a random per-clip augmentation: in the batch's gradient, anything a model
computes from the frames regardless of their order gets equal and opposite pushes from a clip and its
reversal and cancels; only order-sensitive features are left to learn from. A cue as weak as a turn's
direction drowns in the order-blind features' gradient noise otherwise. On `rotate_cw` / `rotate_ccw` alone
(`python -m xvit_edge.bench.accuracy --classes rotate_cw rotate_ccw ... --tag rotation`, see the README),
`xvit_edge_nano` from scratch reached 91% held-out top-1 (causal) with the pairs; with plain batches it stayed
at chance (loss ln 2) at lr 1e-3 and, in a longer diagnostic run, for 2,000 steps at lr 3e-4; reversals drawn
at random per clip, each replacing its original, left it at chance too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# TrainConfig.reverse_pairs: "auto" takes the pairs from the data's meta.json (the synthetic generator writes
# them), "none" turns pairing off, otherwise "a:b,c:d" names them.
AUTO, NONE = "auto", "none"


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """`"a:b,c:d"` -> `[("a", "b"), ("c", "d")]`."""
    pairs = []
    for item in spec.split(","):
        a, sep, b = (s.strip() for s in item.partition(":"))
        if not sep or not a or not b:
            raise ValueError(f"reverse pairs: expected 'class:class' items separated by commas, got {item!r}")
        pairs.append((a, b))
    return pairs


def meta_files(data: str | Path) -> tuple[Path, Path]:
    """Where a `meta.json` for the clips at `data` is looked for: their folder, then the folder above."""
    p = Path(data)
    folder = p if p.is_dir() else p.parent
    return folder / "meta.json", folder.parent / "meta.json"


def meta_pairs(train_data: str | Path) -> list[tuple[str, str]]:
    """The pairs listed in the `meta.json` beside the training data (in its folder or the folder above, as
    `python -m xvit_edge.data.synthetic` writes `OUT/meta.json` next to `OUT/train`); none when absent."""
    for meta in meta_files(train_data):
        if meta.is_file():
            try:
                return [(str(a), str(b)) for a, b in json.loads(meta.read_text()).get("pairs", [])]
            except (AttributeError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
                raise ValueError(f"{meta}: not a JSON object whose 'pairs' is a list of [class, class] "
                                 f"({e})") from e
    return []


def resolve_pairs(spec: str, train_data: str | Path, labels: list[str]) -> list[tuple[str, str]]:
    """The pairs `spec` names (see `AUTO`, `NONE`), restricted under "auto" to pairs whose two classes are both
    in `labels` (a benchmark written with a subset of its classes); explicit pairs must all be there."""
    if spec == NONE:
        return []
    if spec == AUTO:
        return [(a, b) for a, b in meta_pairs(train_data) if a in labels and b in labels]
    pairs = parse_pairs(spec)
    missing = sorted({c for pair in pairs for c in pair} - set(labels))
    if missing:
        raise ValueError(f"reverse pairs name classes that are not in the training data: {missing}; "
                         f"classes: {', '.join(labels)}")
    return pairs


def partner_table(pairs: list[tuple[str, str]], labels: list[str]) -> torch.Tensor:
    """Label index -> its partner's index, or -1 for a class without one."""
    partner = torch.full((len(labels),), -1, dtype=torch.long)
    for a, b in pairs:
        i, j = labels.index(a), labels.index(b)
        if i == j or partner[i] >= 0 or partner[j] >= 0:
            raise ValueError(f"reverse pairs: {a}:{b} pairs a class with itself or a class already paired")
        partner[i], partner[j] = j, i
    return partner


def with_time_reversed(clips: torch.Tensor, labels: torch.Tensor,
                       partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch `(B, T, ...)` followed by the time reversal of every clip whose class has a partner, labelled
    with the partner."""
    mate = partner.to(labels.device)[labels]
    has = mate >= 0
    if not has.any():
        return clips, labels
    return torch.cat([clips, clips[has].flip(1)]), torch.cat([labels, mate[has]])
