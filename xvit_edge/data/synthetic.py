"""A synthetic temporal-reasoning benchmark: our stand-in for Something-Something.

Classes come in pairs that differ ONLY in temporal order: the second class of a pair is the first played
backwards (`move_left` is `move_right` reversed, `shrink` is `grow` reversed, ...). Both classes draw the
same random numbers, so for one generator state the two clips hold exactly the same frames, in opposite
order. A frame-averaging model (any function of the set of frames) therefore scores exactly chance on each
pair, while a model that sees order can solve it. Every clip randomises shape, colour, texture, background,
moving clutter, speed, position, size and pixel noise.

    python -m xvit_edge.data.synthetic --out data/synth

writes `train/<class>/<id>.mp4`, `val/<class>/<id>.mp4`, `labels.txt` and `meta.json`. Clip `<id>` of
the two classes of a pair are reversals of each other (paired generation), so the guarantee holds on the
actual files, up to codec noise.
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..cli_types import even_int_at_least, int_at_least, nonnegative_int, positive_float, positive_int, worker_count
from ..files import AtomicOutput, OutputError, opencv_path, printable, write_text_atomic
from ..signals import terminate_as_interrupt

log = logging.getLogger(__name__)

MIN_FRAMES, MIN_SIZE = 2, 16  # a motion needs two frames; the shapes need room to move
MAX_FRAMES, MAX_SIZE = 1024, 2048  # beyond these a clip no longer fits in memory while it is rendered

# (forward, backward) pairs: the backward class is the forward clip reversed in time.
PAIRS: tuple[tuple[str, str], ...] = (
    ("move_right", "move_left"),
    ("move_down", "move_up"),
    ("rotate_cw", "rotate_ccw"),
    ("grow", "shrink"),
    ("appear", "disappear"),
    ("cover", "uncover"),
)
CLASSES: tuple[str, ...] = tuple(c for pair in PAIRS for c in pair)
PARTNER: dict[str, str] = {**{a: b for a, b in PAIRS}, **{b: a for a, b in PAIRS}}
# class -> (index of its pair, reversed?)
_EVENT: dict[str, tuple[int, bool]] = {c: (i, c == pair[1]) for i, pair in enumerate(PAIRS) for c in pair}

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "arrow")
# Circles and hexagons look (nearly) the same at every angle or every small angle step: a rotation of them
# would be invisible or aliased. The others repeat every SYMMETRY_DEG degrees: a step of half that or more
# reads as the opposite turn.
SYMMETRY_DEG: dict[str, float] = {"square": 90.0, "triangle": 120.0, "star": 72.0, "cross": 90.0, "arrow": 360.0}
ROTATABLE_SHAPES = tuple(SYMMETRY_DEG)
TEXTURES = ("solid", "stripes", "checker")
BACKGROUNDS = ("solid", "gradient", "noise")
SPLITS = ("train", "val")
FOURCC = "mp4v"
# Bumped whenever the same seed would give other clips, so a folder written by an older generator is not reused.
VERSION = 2

# Sampling ranges; lengths are fractions of the frame size. Stored in meta.json.
RANGES: dict[str, Any] = {
    "object_radius": (0.12, 0.20),
    "grow_start_radius": (0.07, 0.11),
    "grow_factor": (1.8, 2.8),
    "travel": (0.30, 0.55),  # how far move_* objects go over the clip
    "rotation_deg": (60.0, 180.0),
    # The fastest step between two written frames, as a fraction of the shape's symmetry period (and at most
    # max_deg_per_frame): 1/8 keeps a model that samples every 2nd or 3rd frame below half a period, where the
    # direction is still unambiguous.
    "max_step_of_symmetry": 0.125,
    "max_deg_per_frame": 25.0,
    "rotate_radius": (0.18, 0.26),  # rotating objects are larger: the turn must show at a model's input size
    "drift": (0.0, 0.08),  # slow random drift of non-moving objects, so motion alone does not give move_*
    "jitter_px": 0.4,  # per-frame hand tremor
    "clutter_count": (0, 4),
    "clutter_radius": (0.03, 0.07),
    "clutter_travel": (0.0, 0.5),
    "occluder_halfwidth": (1.3, 1.7),  # times the object radius: the occluder covers the object fully
    "pattern_period": (0.25, 0.6),  # stripe/checker period in object units (radius 1)
    "pixel_noise_std": (0.0, 6.0),  # in 0..255 units
}


@dataclass(frozen=True, eq=False)
class Layer:
    """One textured shape and its pose in every frame (forward time). Lengths in pixels, angles in radians;
    the angle grows clockwise on screen (y points down)."""

    role: str  # "clutter", "object" or "occluder"
    shape: str
    texture: str
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]  # RGB 0..255
    pattern_angle: float
    pattern_period: float
    x: np.ndarray  # (T,) centre
    y: np.ndarray
    angle: np.ndarray
    sx: np.ndarray  # (T,) half-extent along the shape's own axes
    sy: np.ndarray
    alpha: np.ndarray  # (T,) opacity


@dataclass(frozen=True, eq=False)
class ClipParams:
    """Everything that determines a clip; `render` turns it into frames deterministically."""

    class_name: str
    background: np.ndarray  # (H, W, 3) float32 RGB 0..255
    layers: tuple[Layer, ...]  # drawn in order, back to front
    noise_std: float
    noise_seed: int
    reverse: bool  # the backward class of a pair: the forward frames in reverse order

    @property
    def frames(self) -> int:
        return len(self.layers[0].x)

    def replace(self, **changes: Any) -> "ClipParams":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------- sampling


def _color(rng: np.random.Generator, bright: bool, vivid: bool) -> tuple[float, float, float]:
    h = rng.random()
    s = rng.uniform(0.5, 1.0) if vivid else rng.uniform(0.0, 0.5)
    v = rng.uniform(0.65, 1.0) if bright else rng.uniform(0.05, 0.4)
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, size: int, dark: bool) -> np.ndarray:
    c0, c1 = (np.array(_color(rng, not dark, vivid=False), np.float32) for _ in range(2))
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    if kind == "solid":
        w = np.zeros((size, size, 1), np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        g = np.linspace(-1, 1, size, dtype=np.float32)
        w = (np.cos(a) * g[None, :] + np.sin(a) * g[:, None])[..., None] * 0.5 + 0.5
    else:  # smooth random blobs: a coarse random grid, upsampled
        grid = int(rng.integers(3, 13))
        w = cv2.resize(rng.random((grid, grid), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        w = np.clip(w, 0, 1)[..., None]
    return (c0 + (c1 - c0) * w).astype(np.float32)


def _profile(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Progress of the event, exactly 0 at the first frame and 1 at the last: it may start late and end
    early (a random speed) and ease in and out."""
    t = np.linspace(0, 1, frames)
    a, b = rng.uniform(0.0, 0.3), rng.uniform(0.7, 1.0)
    p = np.clip((t - a) / (b - a), 0, 1)
    return p * p * (3 - 2 * p) if rng.random() < 0.5 else p


def _layer(rng: np.random.Generator, role: str, shape: str, bright: bool, vivid: bool, frames: int,
           x: Any, y: Any, angle: Any, sx: Any, sy: Any | None = None, alpha: Any = 1.0) -> Layer:
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    colors = (_color(rng, bright, vivid), _color(rng, bright, vivid))
    full = lambda v: np.broadcast_to(np.asarray(v, np.float64), (frames,)).copy()  # noqa: E731
    return Layer(role, shape, texture, colors, rng.uniform(0, math.pi), rng.uniform(*RANGES["pattern_period"]),
                 full(x), full(y), full(angle), full(sx), full(sx if sy is None else sy), full(alpha))


def _clutter(rng: np.random.Generator, frames: int, size: int) -> Layer:
    """A small distractor drifting in a random direction (so its reversal is equally likely)."""
    t = np.linspace(-0.5, 0.5, frames)
    r = rng.uniform(*RANGES["clutter_radius"]) * size
    x0, y0 = rng.uniform(0, size, 2)
    d, a = rng.uniform(*RANGES["clutter_travel"]) * size, rng.uniform(0, 2 * math.pi)
    spin = rng.uniform(-1.0, 1.0)
    return _layer(rng, "clutter", SHAPES[rng.integers(len(SHAPES))], rng.random() < 0.5, rng.random() < 0.5,
                  frames, x0 + d * math.cos(a) * t, y0 + d * math.sin(a) * t, rng.uniform(0, 2 * math.pi) + spin * t, r)


def _event(pair: int, rng: np.random.Generator, frames: int, size: int, dark: bool) -> list[Layer]:
    """The main object (and the occluder for cover) doing the FORWARD event of `PAIRS[pair]`."""
    forward = PAIRS[pair][0]
    p = _profile(rng, frames)
    t = np.linspace(-0.5, 0.5, frames)
    jitter = rng.normal(0.0, RANGES["jitter_px"], (2, frames))
    shapes = ROTATABLE_SHAPES if forward == "rotate_cw" else SHAPES
    shape = shapes[rng.integers(len(shapes))]
    angle = rng.uniform(0, 2 * math.pi)
    obj = dict(rng=rng, role="object", shape=shape, bright=dark, vivid=True, frames=frames)

    if forward in ("move_right", "move_down"):
        r = rng.uniform(*RANGES["object_radius"]) * size
        travel = rng.uniform(*RANGES["travel"]) * size
        along = rng.uniform(r, size - r - travel) + travel * p
        across = np.full(frames, rng.uniform(r, size - r))
        x, y = (along, across) if forward == "move_right" else (across, along)
        return [_layer(**obj, x=x + jitter[0], y=y + jitter[1], angle=angle, sx=r)]

    if forward == "cover":
        r = rng.uniform(*RANGES["object_radius"]) * size
        cx, cy = rng.uniform(r, size - r, 2)
        w = rng.uniform(*RANGES["occluder_halfwidth"]) * r
        vertical, sign = rng.random() < 0.5, rng.choice((-1.0, 1.0))
        # The bar slides in from clear of the object (gap > 0) to centred on it (fully covering it).
        offset = sign * (r + w + rng.uniform(0.02, 0.1) * size) * (1 - p)
        ox, oy = (cx, cy + offset) if vertical else (cx + offset, cy)
        tilt = rng.uniform(-0.2, 0.2) + (math.pi / 2 if vertical else 0.0)
        target = _layer(**obj, x=cx + jitter[0], y=cy + jitter[1], angle=angle, sx=r)
        bar = _layer(rng, "occluder", "bar", dark, False, frames, ox, oy, tilt, w, 1.5 * size)
        return [target, bar]

    # rotate, grow, appear: an object in place, drifting slowly in a random direction.
    if forward == "grow":
        r0 = rng.uniform(*RANGES["grow_start_radius"]) * size
        r = r0 * rng.uniform(*RANGES["grow_factor"]) ** p  # geometric: looks like steady growth
    else:
        radius = RANGES["rotate_radius" if forward == "rotate_cw" else "object_radius"]
        r = np.full(frames, rng.uniform(*radius) * size)
    drift, a = rng.uniform(*RANGES["drift"]) * size, rng.uniform(0, 2 * math.pi)
    margin = r.max() + drift / 2
    cx, cy = rng.uniform(margin, size - margin, 2)
    x, y = cx + drift * math.cos(a) * t + jitter[0], cy + drift * math.sin(a) * t + jitter[1]
    alpha: Any = 1.0
    if forward == "rotate_cw":
        # The cap bounds the peak step of the eased profile, not the mean one (up to ~4x the mean).
        step = min(SYMMETRY_DEG[shape] * RANGES["max_step_of_symmetry"], RANGES["max_deg_per_frame"])
        total = min(rng.uniform(*RANGES["rotation_deg"]), step / float(np.diff(p).max()))
        angle = angle + math.radians(total) * p
    elif forward == "appear":
        if rng.random() < 0.5:  # fade in
            alpha = p
        else:  # pop in at a frame in the middle half
            lo = max(1, frames // 4)
            alpha = (np.arange(frames) >= rng.integers(lo, max(lo + 1, frames - frames // 4))).astype(np.float64)
    return [_layer(**obj, x=x, y=y, angle=angle, sx=r, alpha=alpha)]


def sample_params(class_name: str, rng: np.random.Generator, frames: int = 16, size: int = 128) -> ClipParams:
    """Draw one clip of `class_name`. The two classes of a pair consume `rng` identically."""
    if class_name not in _EVENT:
        raise ValueError(f"unknown class {class_name!r}; available: {', '.join(CLASSES)}")
    if frames < MIN_FRAMES or size < MIN_SIZE:
        raise ValueError(f"need frames >= {MIN_FRAMES} and size >= {MIN_SIZE}, got frames={frames}, size={size}")
    pair, reverse = _EVENT[class_name]
    dark = bool(rng.random() < 0.5)  # dark background, bright object, or the other way round: always contrast
    background = _background(rng, size, dark)
    lo, hi = RANGES["clutter_count"]
    clutter = [_clutter(rng, frames, size) for _ in range(rng.integers(lo, hi + 1))]
    layers = clutter + _event(pair, rng, frames, size, dark)
    noise_std = float(rng.uniform(*RANGES["pixel_noise_std"]))
    return ClipParams(class_name, background, tuple(layers), noise_std, int(rng.integers(2**63)), reverse)


# --------------------------------------------------------------------------------------------- rendering

_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(math.cos(a), math.sin(a)) for a in np.radians([-90, 30, 150])],
    "star": [((1.0, 0.45)[k % 2] * math.cos(a), (1.0, 0.45)[k % 2] * math.sin(a))
             for k, a in enumerate(np.radians(np.arange(-90, 270, 36)))],
    "hexagon": [(math.cos(a), math.sin(a)) for a in np.radians(np.arange(0, 360, 60))],
    "cross": [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
              (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)],
    "arrow": [(-1, -0.22), (0.25, -0.22), (0.25, -0.6), (1, 0), (0.25, 0.6), (0.25, 0.22), (-1, 0.22)],
}


def _sprite(layer: Layer, size: int) -> np.ndarray:
    """The layer's shape and texture in its own coordinates ([-1, 1] on both axes), as premultiplied RGBA,
    at about its largest on-screen resolution so that warping it is close to 1:1."""
    sx = int(min(2 * size, math.ceil(2 * layer.sx.max()) + 2))
    sy = int(min(2 * size, math.ceil(2 * layer.sy.max()) + 2))
    u, v = np.meshgrid((np.arange(sx) + 0.5) * 2 / sx - 1, (np.arange(sy) + 0.5) * 2 / sy - 1)
    if layer.shape == "bar":
        mask = np.ones((sy, sx))
    elif layer.shape == "circle":  # analytic anti-aliasing over one pixel
        mask = np.clip((1 - np.hypot(u, v)) * min(sx, sy) / 2 + 0.5, 0, 1)
    else:
        pts = (np.array(_POLYGONS[layer.shape]) + 1) / 2 * (sx, sy) - 0.5
        canvas = np.zeros((sy, sx), np.uint8)
        cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        mask = canvas / 255.0
    per = layer.pattern_period
    if layer.texture == "stripes":
        pattern = np.floor((u * math.cos(layer.pattern_angle) + v * math.sin(layer.pattern_angle)) / per) % 2
    elif layer.texture == "checker":
        pattern = (np.floor(u / per) + np.floor(v / per)) % 2
    else:
        pattern = np.zeros_like(u)
    c0, c1 = (np.array(c) for c in layer.colors)
    rgb = c0 + (c1 - c0) * pattern[..., None]
    return np.concatenate([rgb * mask[..., None], mask[..., None]], axis=-1).astype(np.float32)


def _affine(layer: Layer, t: int, sprite_shape: tuple[int, ...]) -> np.ndarray:
    """2x3 map from sprite pixels to frame pixels at frame t (pixel centres at integer coordinates)."""
    h, w = sprite_shape[:2]
    c, s = math.cos(layer.angle[t]), math.sin(layer.angle[t])
    a = np.array([[c * layer.sx[t], -s * layer.sy[t]], [s * layer.sx[t], c * layer.sy[t]]])
    to_local = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1]])  # sprite pixel -> [-1, 1]
    m = a @ to_local
    m[:, 2] += (layer.x[t], layer.y[t])
    return m


def render(params: ClipParams) -> np.ndarray:
    """Frames of a clip, `(T, H, W, 3)` uint8 RGB."""
    size = params.background.shape[0]
    sprites = [_sprite(layer, size) for layer in params.layers]
    out = np.empty((params.frames, size, size, 3), np.float32)
    for t in range(params.frames):
        frame = params.background.copy()
        for layer, sprite in zip(params.layers, sprites):
            a = np.float32(layer.alpha[t])
            if a <= 0:
                continue
            w = cv2.warpAffine(sprite, _affine(layer, t, sprite.shape), (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            frame *= 1 - a * w[..., 3:]
            frame += a * w[..., :3]
        out[t] = frame
    if params.noise_std > 0:
        out += params.noise_std * np.random.default_rng(params.noise_seed).standard_normal(out.shape, np.float32)
    clip = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    # The forward clip is built for both classes of a pair; the backward class is exactly its reversal.
    return np.ascontiguousarray(clip[::-1]) if params.reverse else clip


def generate_clip(class_name: str, rng: np.random.Generator, frames: int = 16, size: int = 128) -> np.ndarray:
    """One random clip of `class_name`: `(frames, size, size, 3)` uint8 RGB. For equal `rng` states the two
    classes of a pair give the same frames in reverse order."""
    return render(sample_params(class_name, rng, frames, size))


# ------------------------------------------------------------------------------------------------ writing


def clip_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """The generator of one clip of the dataset. It depends on the pair, not the class, so clip `index` of
    both classes of a pair are reversals of each other; and not on the worker count or class selection."""
    return np.random.default_rng([seed, SPLITS.index(split), _EVENT[class_name][0], index])


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write RGB `frames` as an mp4 and check that it decodes back to the same number and size of frames; the
    file appears only once it does (an interrupted run leaves no half-written clip)."""
    path = Path(path)
    t, h, w = frames.shape[:3]
    with AtomicOutput(path) as out, opencv_path(out.tmp) as name:
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*FOURCC), float(fps), (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter cannot open {printable(path)} with fourcc {FOURCC!r}")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        cap = cv2.VideoCapture(name)
        n, shape = 0, None
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n, shape = n + 1, frame.shape[:2]
        cap.release()
        if n != t or shape != (h, w):
            raise RuntimeError(f"{printable(path)}: wrote {t} frames of {h}x{w}, decoded {n} frames of {shape}")


def _write_job(job: tuple[str, str, int, int, int, int, float, str]) -> str:
    split, class_name, index, seed, frames, size, fps, out = job
    path = Path(out) / split / class_name / f"{index:05d}.mp4"
    write_video(path, generate_clip(class_name, clip_rng(seed, split, class_name, index), frames, size), fps)
    return str(path)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def write_dataset(out: str | Path, classes: Sequence[str] | None = None, train_per_class: int = 40,
                  val_per_class: int = 10, frames: int = 16, size: int = 128, fps: float = 15,
                  seed: int = 0, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the benchmark to `out` (folder-per-class train/ and val/, labels.txt, meta.json); returns a
    summary. `workers`: processes (None: one per core; 0 or 1: this process). Output does not depend on it."""
    classes = list(CLASSES if classes is None else classes)
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {', '.join(CLASSES)}; got {classes}")
    if size % 2:
        raise ValueError(f"size must be even (the mp4v codec needs even frame sizes), got {size}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{printable(out)} is a file; name a folder to write the benchmark into")
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": train_per_class, "val": val_per_class}
    jobs = [(split, c, i, seed, frames, size, fps, str(out)) for split in SPLITS for c in classes
            for i in range(counts[split])]
    for split, c in {(j[0], j[1]) for j in jobs}:
        (out / split / c).mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else workers
    log.info("writing %d clips (%d classes, %d frames of %d px) to %s with %d workers",
             len(jobs), len(classes), frames, size, out, workers)

    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="synthetic clips", unit="clip", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        results: Iterable[str] = map(_write_job, jobs)
        for _ in results:
            bar.update()
    else:
        # spawn, not fork: a process forked after OpenCV has started its thread pool can deadlock in cv2.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            for _ in pool.map(_write_job, jobs, chunksize=4):
                bar.update()
    bar.close()
    seconds = time.perf_counter() - start

    write_text_atomic(out / "labels.txt", "".join(c + "\n" for c in classes))
    meta = {
        "generator": "xvit_edge.data.synthetic", "version": VERSION,
        "seed": seed, "frames": frames, "size": size, "fps": fps, "fourcc": FOURCC,
        "classes": classes, "pairs": [list(p) for p in PAIRS],
        "train_per_class": train_per_class, "val_per_class": val_per_class,
        "paired": "clip <id> of the two classes of a pair are time reversals of each other",
        "shapes": list(SHAPES), "textures": list(TEXTURES), "backgrounds": list(BACKGROUNDS),
        "ranges": RANGES,
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    summary = {"out": str(out), "classes": classes, "clips": {s: counts[s] * len(classes) for s in SPLITS},
               "seconds": round(seconds, 2)}
    log.debug("wrote %d clips to %s in %.1f s", len(jobs), out, seconds)
    return summary


def check_out(out: Path, overwrite: bool) -> None:
    """--out must be new, empty, or a dataset this command wrote (its meta.json says so; an interrupted run's
    train/ and val/ alone are resumed): an OutputError otherwise, unless `overwrite`."""
    if overwrite or not out.is_dir():
        return
    ours = {"train", "val", "labels.txt", "meta.json"}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours)
    meta = out / "meta.json"
    try:
        written = json.loads(meta.read_text()).get("generator") == "xvit_edge.data.synthetic"
    except (OSError, ValueError, AttributeError):
        written = False
    if others or ((meta.exists() or (out / "labels.txt").exists()) and not written):
        raise OutputError(f"--out {printable(out)} holds files this command did not write"
                          + (f" ({', '.join(printable(o) for o in others[:3])})" if others else "")
                          + "; choose a new or empty folder, or pass --overwrite")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m xvit_edge.data.synthetic",
        description="Write the synthetic temporal benchmark: pairs of classes whose clips differ only in "
        "temporal order (each backward class is its forward partner played in reverse), as .mp4 files in "
        "OUT/{train,val}/<class>/<id>.mp4 with OUT/labels.txt and OUT/meta.json.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--classes", nargs="+", choices=CLASSES, default=list(CLASSES), metavar="CLASS",
                   help=f"classes to write (default: all): {' '.join(CLASSES)}")
    p.add_argument("--train-per-class", type=positive_int, default=40,
                   help="training clips per class (default: %(default)s)")
    p.add_argument("--val-per-class", type=nonnegative_int, default=10,
                   help="validation clips per class (default: %(default)s)")
    p.add_argument("--frames", type=int_at_least(MIN_FRAMES, MAX_FRAMES), default=16,
                   help=f"frames per clip, {MIN_FRAMES} to {MAX_FRAMES} (default: %(default)s)")
    p.add_argument("--size", type=even_int_at_least(MIN_SIZE, MAX_SIZE), default=128,
                   help=f"frame height and width in pixels, even, {MIN_SIZE} to {MAX_SIZE} (default: %(default)s)")
    p.add_argument("--fps", type=positive_float, default=15,
                   help="frame rate written into the video files (default: %(default)s)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="random seed: the same seed gives the same frames (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out folder that holds other files, replacing those with the names written")
    p.add_argument("--workers", type=worker_count, default=None,
                   help="worker processes (default: one per CPU core; 0 or 1: no subprocesses)")
    args = p.parse_args(argv)
    terminate_as_interrupt()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_out(Path(args.out), args.overwrite)
        s = write_dataset(args.out, args.classes, args.train_per_class, args.val_per_class, args.frames, args.size,
                          args.fps, args.seed, args.workers)
    except (OSError, ValueError) as e:  # --out a file or not writable, a full disk: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # each clip is moved into place only when complete
        print("interrupted; the clips already written are complete, run again to write the rest", file=sys.stderr)
        return 130
    print(f"wrote {s['clips']['train']} train + {s['clips']['val']} val clips of {len(s['classes'])} classes "
          f"to {printable(s['out'])} in {s['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
