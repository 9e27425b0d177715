"""Labelled clip lists (folder per class, or a `path,label` CSV/txt list) and the clip dataset.

A bad video never kills an epoch: the dataset returns None for it, `collate_skip_bad` drops it and carries
its path in the batch, and the training loop counts and reports what was skipped.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Preprocessing
from .transforms import augment_frames, preprocess_frames, spatial_crops
from .video import (VideoError, count_frames, multiview_indices, probe, read_frames, segment_indices,
                    uniform_indices)

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
Sample = tuple[str, int]


def folder_samples(root: str | os.PathLike) -> tuple[list[Sample], list[str]]:
    """`root/<class>/<clip>.mp4` -> samples and the sorted class names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    labels = sorted(d.name for d in root.iterdir() if d.is_dir())
    samples = [(str(f), i) for i, name in enumerate(labels) for f in sorted((root / name).iterdir())
               if f.suffix.lower() in VIDEO_EXTENSIONS]
    if not samples:
        raise ValueError(f"{root}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in class sub-folders")
    return samples, labels


def list_samples(list_file: str | os.PathLike, root: str | os.PathLike | None = None,
                 labels: list[str] | None = None, on_missing: str = "error") -> tuple[list[Sample], list[str]]:
    """A `path,label` list (Kinetics-style CSV or txt; a header row is allowed). Labels may be names or
    integers; relative paths are resolved against `root` (default: the list's folder). A row naming a
    missing file raises (`on_missing="error"`) or is skipped and counted (`"skip"`)."""
    list_file = Path(list_file)
    base = Path(root) if root else list_file.parent
    rows = []
    with open(list_file, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#") or (lineno == 1 and row[0].lower() == "path"):
                continue
            if len(row) < 2:
                raise ValueError(f"{list_file}:{lineno}: expected 'path,label', got {','.join(row)!r}")
            rows.append((lineno, row[0], row[1]))
    names = list(labels) if labels else sorted({lab for _, _, lab in rows if not lab.isdigit()})
    samples, missing = [], []
    for lineno, path, lab in rows:
        full = Path(path) if Path(path).is_absolute() else base / path
        if not full.is_file():
            if on_missing == "error":
                raise FileNotFoundError(f"{list_file}:{lineno}: names {full}, which does not exist")
            missing.append(str(full))
            continue
        if lab.isdigit():
            index = int(lab)
        elif lab in names:
            index = names.index(lab)
        else:
            raise ValueError(f"{list_file}:{lineno}: label {lab!r} is not one of the known labels")
        samples.append((str(full), index))
    if missing:
        log.warning("%s: skipped %d rows naming missing files, e.g. %s", list_file, len(missing), missing[0])
    if not names:  # integer labels only
        names = [str(i) for i in range(max(i for _, i in samples) + 1)]
    return samples, names


def load_samples(source: str | os.PathLike, labels: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """A folder per class or a list file; with `labels`, indices follow that label order (validation)."""
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such folder or list file")
    if p.is_dir():
        samples, found = folder_samples(p)
        if labels is None:
            return samples, found
        unknown = sorted(set(found) - set(labels))
        if unknown:
            raise ValueError(f"{p}: classes {unknown} are not among the training labels")
        return [(path, labels.index(found[i])) for path, i in samples], list(labels)
    return list_samples(p, labels=labels, on_missing="skip")


@dataclass
class Batch:
    clips: torch.Tensor | None  # (B, T, 3, S, S) or (B, views, T, 3, S, S); None when every clip was bad
    labels: torch.Tensor | None
    skipped: list[str] = field(default_factory=list)  # files that could not be read


def collate_skip_bad(items: list) -> Batch:
    """Stack the good samples; report the bad ones (None entries carry their path) as `skipped`."""
    good = [it for it in items if not isinstance(it, str)]
    skipped = [it for it in items if isinstance(it, str)]
    if not good:
        return Batch(None, None, skipped)
    return Batch(torch.stack([c for c, _ in good]), torch.tensor([y for _, y in good]), skipped)


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips of T frames, preprocessed; in training, randomly sampled and augmented (seeded per item and
    epoch); at test, `num_clips` temporal x `num_crops` spatial views. A file that cannot be used is
    returned as its path (a str) so `collate_skip_bad` can drop and report it."""

    def __init__(self, samples: list[Sample], labels: list[str], num_frames: int, preprocessing: Preprocessing,
                 *, train: bool, sampling: str = "segment", stride: int = 2, num_clips: int = 1,
                 num_crops: int = 1, scale_min: float = 0.7, flip: bool = False, seed: int = 0) -> None:
        if sampling not in ("segment", "uniform"):
            raise ValueError(f"sampling must be 'segment' or 'uniform', got {sampling!r}")
        self.samples, self.labels = samples, labels
        self.num_frames, self.pre, self.train = num_frames, preprocessing, train
        self.sampling, self.stride = sampling, stride
        self.num_clips, self.num_crops = num_clips, num_crops
        self.scale_min, self.flip, self.seed = scale_min, flip, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """The clip and label; raises VideoError for a file that cannot be used."""
        path, label = self.samples[index]
        # The container's count is cheap; read_frames copes when it is wrong. Decode to count only if absent.
        n = probe(path).frames
        n = n if n > 0 else count_frames(path)
        t = self.num_frames
        if n < t:
            raise VideoError(f"{path}: {n} frames, fewer than the {t} the model needs")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train:
            idx = segment_indices(n, t, train=True, rng=rng) if self.sampling == "segment" \
                else uniform_indices(n, t, self.stride, train=True, rng=rng)
            clip = augment_frames(read_frames(path, idx), self.pre, rng, scale=(self.scale_min, 1.0), flip=self.flip)
            return clip, label
        views = multiview_indices(n, t, self.num_clips, self.sampling, self.stride)
        frames = read_frames(path, [i for v in views for i in v])
        frames = frames.reshape(len(views), t, *frames.shape[1:])  # (views, T, H, W, 3)
        clips = torch.cat([spatial_crops(f, self.pre, self.num_crops) for f in frames])  # (views, T, 3, S, S)
        return (clips[0] if len(clips) == 1 else clips), label

    def __getitem__(self, index: int):
        try:
            return self.load(index)
        except VideoError as e:
            log.warning("skipping %s", e)
            return self.samples[index][0]
