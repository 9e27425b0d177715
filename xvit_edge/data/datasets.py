"""Labelled clip lists (a folder per class, or a `path,label` list) and the clip dataset.

A bad video never stops an epoch: the dataset returns a `Skipped` marker (the file's path and why) in place
of the sample, `collate_skip_bad` drops it and carries the path in the batch (`Batch.skipped`), and the
training loop counts and reports what was skipped. The marker travels through DataLoader workers like any
sample, so the count is right with any number of workers; `VideoClipDataset.bad_files` counts only the
skips of the process it lives in (all of them when `num_workers=0`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import torch

from ..config import Preprocessing
from ..files import printable
from .transforms import augment_frames, spatial_crops
from .video import VideoError, count_frames, multiview_indices, probe, read_frames, segment_indices, uniform_indices

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
Sample = tuple[str, int]  # (path, label index)


def folder_samples(root: str | os.PathLike) -> tuple[list[Sample], list[str]]:
    """`root/<class>/<clip>.mp4` -> samples and the class names, sorted (label index = position). Hidden
    folders are not classes, hidden files not clips; an empty class folder still takes its place in the label
    order (`empty_classes` finds them, for training to refuse). A folder name that is not valid UTF-8 gives
    the label `printable` shows (its odd bytes as \\xNN): labels are text, written into JSON and drawn onto
    frames."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{printable(root)}: no such folder")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))  # no .cache etc.
    labels = [printable(name) for name in folders]
    for name, label in zip(folders, labels):
        if label != name:
            log.warning("%s: the folder name is not valid UTF-8; the class is labelled '%s'", printable(root / name),
                        label)
    if len(set(labels)) < len(labels):  # b"caf\xe9" and a folder literally named "caf\\xe9"
        twice = sorted(lab for lab, n in Counter(labels).items() if n > 1)
        raise ValueError(f"{printable(root)}: two class folders are both labelled {twice[0]!r}; rename one of them")
    # Hidden files are not clips: "._clip.mp4" is macOS metadata, ".clip.mp4.*.partial.mp4" a write under way.
    samples = [(str(f), i) for i, name in enumerate(folders) for f in sorted((root / name).iterdir())
               if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in VIDEO_EXTENSIONS]
    if not samples:
        raise ValueError(f"{printable(root)}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in class sub-folders")
    return samples, labels


def empty_classes(samples: list[Sample], labels: list[str]) -> list[str]:
    """The labels that no sample has."""
    used = {y for _, y in samples}
    return [name for i, name in enumerate(labels) if i not in used]


def _rows(list_file: Path) -> list[tuple[int, str, str]]:
    """(line number, path, label) for every row: `path,label` (CSV), or `path label` when a line has no comma
    (the TSN / mmaction txt form). Blank lines, `#` comments and a header row are left out."""
    rows = []
    # -sig: spreadsheets write a BOM. surrogateescape: a path's bytes that are not UTF-8 come through as the
    # OS's own name for the file (os.fsdecode), not as an error.
    with open(list_file, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            row = next(csv.reader([line])) if "," in line else line.rsplit(maxsplit=1)
            row = [c.strip() for c in row]
            if len(row) < 2 or not row[0] or not row[1]:
                raise ValueError(f"{printable(list_file)}:{lineno}: expected 'path,label', got {printable(line)!r}")
            if lineno == 1 and (row[0].lower() in ("path", "video", "file", "filename")
                                or row[1].lower() in ("label", "class")):
                continue  # header
            label = printable(row[1])
            if label != row[1]:
                log.warning("%s:%d: the label is not valid UTF-8; it is read as '%s'", printable(list_file), lineno,
                            label)
            rows.append((lineno, row[0], label))
    if not rows:
        raise ValueError(f"{printable(list_file)}: no 'path,label' rows")
    return rows


def list_samples(list_file: str | os.PathLike, root: str | os.PathLike | None = None,
                 labels: list[str] | None = None, on_missing: str = "error") -> tuple[list[Sample], list[str]]:
    """Samples from a `path,label` list (CSV or txt; a header row is allowed).

    Labels are names or integer indices. Without `labels`, the names found are sorted (or, when every label
    is an integer, named "0".."N-1"); with `labels` (validation following training), indices follow that
    order. Relative paths are resolved against `root`, by default the list's own folder. A row naming a
    missing file raises a VideoError with its line number (`on_missing="error"`), or is skipped and counted
    in a warning (`"skip"`).
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{printable(list_file)}: no such list file")
    base = Path(root) if root is not None else list_file.parent
    rows = _rows(list_file)
    if labels is not None:
        names = list(labels)
    elif all(lab.isdigit() for _, _, lab in rows):
        names = [str(i) for i in range(max(int(lab) for _, _, lab in rows) + 1)]
    elif any(lab.isdigit() for _, _, lab in rows):
        raise ValueError(f"{printable(list_file)}: mixes label names and integer labels; use one or pass `labels`")
    else:
        names = sorted({lab for _, _, lab in rows})
    samples, missing = [], []
    for lineno, path, lab in rows:
        full = Path(path) if Path(path).is_absolute() else base / path
        if lab in names:
            index = names.index(lab)
        elif lab.isdigit() and int(lab) < len(names):
            index = int(lab)
        else:
            raise ValueError(f"{printable(list_file)}:{lineno}: label {lab!r} is not one of the {len(names)} labels")
        if not full.is_file():
            if on_missing == "error":
                raise VideoError(f"{printable(list_file)}:{lineno}: names {printable(full)}, which does not exist")
            missing.append(str(full))
            continue
        samples.append((str(full), index))
    if missing:
        log.warning("%s: skipped %d rows naming missing files, e.g. %s", printable(list_file), len(missing),
                    printable(missing[0]))
    if not samples:
        raise ValueError(f"{printable(list_file)}: none of the {len(rows)} files it names exists")
    return samples, names


def load_samples(source: str | os.PathLike, labels: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """A folder per class or a list file (missing files skipped); with `labels`, indices follow that label
    order, as validation data must follow the training labels."""
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"{printable(p)}: no such folder or list file")
    if p.is_dir():
        samples, found = folder_samples(p)
        if labels is None:
            return samples, found
        unknown = sorted(set(found) - set(labels))
        if unknown:
            raise ValueError(f"{printable(p)}: classes {unknown} are not among the training labels")
        return [(path, labels.index(found[i])) for path, i in samples], list(labels)
    return list_samples(p, labels=labels, on_missing="skip")


# ------------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Skipped:
    """Returned by the dataset in place of a sample whose file cannot be used."""

    path: str
    reason: str


@dataclass
class Batch:
    clips: torch.Tensor | None  # (B, T, 3, S, S) or (B, views, T, 3, S, S); None when every clip was bad
    labels: torch.Tensor | None  # (B,) int64; None when every clip was bad
    skipped: list[str] = field(default_factory=list)  # paths of the files left out of this batch


Item = tuple[torch.Tensor, int] | Skipped | None  # what the dataset returns


def collate_skip_bad(items: list[Item]) -> Batch:
    """DataLoader `collate_fn`: stack the good samples, drop the bad ones (`Skipped`, or None from other
    datasets, listed as "<unknown>") and list their paths in `skipped`. A batch of only bad samples comes
    back with `clips` and `labels` None, still carrying the paths, so that the skip count stays exact."""
    good = [it for it in items if isinstance(it, tuple)]
    skipped = [it.path if isinstance(it, Skipped) else "<unknown>" for it in items if not isinstance(it, tuple)]
    if not good:
        return Batch(None, None, skipped)
    return Batch(torch.stack([c for c, _ in good]), torch.tensor([y for _, y in good], dtype=torch.long), skipped)


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips of T frames, preprocessed, with their label index.

    Training: frames sampled at random (`segment` or `uniform`), then one random crop for the clip
    (`augment_frames`). Test: `num_clips` temporal x `num_crops` spatial views, returned as
    `(views, T, 3, S, S)` (a single view as `(T, 3, S, S)`).

    Randomness comes from a generator seeded with (seed, epoch, index), not from the process: a sample draws
    the same frames and crop whichever DataLoader worker loads it, so runs reproduce with any worker count.
    Set `epoch` (or call `set_epoch`) before each epoch for new draws.

    A file shorter than `min_frames` decodable frames (default T; 1 accepts short clips, their frames
    repeated as TSN does), or one that cannot be decoded, comes back as a `Skipped` marker.
    """

    def __init__(self, samples: list[Sample], labels: list[str], num_frames: int, preprocessing: Preprocessing,
                 *, train: bool, sampling: str = "segment", stride: int = 2, num_clips: int = 1,
                 num_crops: int = 1, scale_min: float = 0.7, flip: bool = False, seed: int = 0,
                 min_frames: int | None = None) -> None:
        if sampling not in ("segment", "uniform"):
            raise ValueError(f"sampling must be 'segment' or 'uniform', got {sampling!r}")
        if min(num_frames, stride, num_clips, num_crops) < 1:
            raise ValueError(f"num_frames, stride, num_clips, num_crops must be >= 1, got "
                             f"{num_frames}, {stride}, {num_clips}, {num_crops}")
        bad = [(p, y) for p, y in samples if not 0 <= y < len(labels)]
        if bad:
            raise ValueError(f"{len(bad)} samples have a label index outside the {len(labels)} labels, e.g. {bad[0]}")
        self.samples, self.labels = list(samples), list(labels)
        self.num_frames, self.pre, self.train = num_frames, preprocessing, train
        self.sampling, self.stride = sampling, stride
        self.num_clips, self.num_crops = num_clips, num_crops
        self.scale_min, self.flip, self.seed = scale_min, flip, seed
        self.min_frames = num_frames if min_frames is None else max(1, min_frames)
        self.epoch = 0
        self.bad_files: Counter[str] = Counter()  # path -> times skipped, in this process only

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """The clip and its label; raises VideoError for a file that cannot be used."""
        path, label = self.samples[index]
        # The container's count is free; read_frames copes when it is too large. Decode to count when absent.
        n = probe(path).frames or count_frames(path)
        if n < self.min_frames:
            raise VideoError(f"{path}: {n} frames, fewer than the {self.min_frames} needed")
        t = self.num_frames
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            idx = segment_indices(n, t, train=True, rng=rng) if self.sampling == "segment" \
                else uniform_indices(n, t, self.stride, train=True, rng=rng)
            frames = read_frames(path, idx, min_frames=self.min_frames)
            return augment_frames(frames, self.pre, rng, scale=(self.scale_min, 1.0), flip=self.flip), label
        views = multiview_indices(n, t, self.num_clips, self.sampling, self.stride)
        frames = read_frames(path, [i for v in views for i in v], min_frames=self.min_frames)  # one pass for all
        frames = frames.reshape(len(views), t, *frames.shape[1:])  # (clips, T, H, W, 3)
        clips = torch.cat([spatial_crops(f, self.pre, self.num_crops) for f in frames])  # (clips*crops, T, 3, S, S)
        return (clips[0] if len(clips) == 1 else clips), label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Skipped:
        try:
            return self.load(index)
        except VideoError as e:
            path = self.samples[index][0]
            self.bad_files[path] += 1
            log.warning("skipping %s", e)
            return Skipped(path, str(e))
