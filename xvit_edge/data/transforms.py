"""The one preprocessing path shared by training, evaluation, export checks and the streaming runtime.

Resize the shorter side to `resize_shorter`, centre crop `crop_size`, scale to [0, 1], normalise with
mean/std. `preprocess_frame` runs the same code on one frame, so a streamed frame is bit-identical to the same
frame inside a clip. Training augmentation (`augment_frames`) ends in the same normalisation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Preprocessing
from .video import _cv2


def _check(frames: np.ndarray, pre: Preprocessing) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"expected RGB frames (T, H, W, 3) uint8, got {got}")
    if pre.crop_size > pre.resize_shorter:
        raise ValueError(f"crop_size {pre.crop_size} is larger than resize_shorter {pre.resize_shorter}")


def _resize_shorter(frame: np.ndarray, shorter: int) -> np.ndarray:
    cv2 = _cv2()
    h, w = frame.shape[:2]
    scale = shorter / min(h, w)
    if scale == 1:
        return frame
    size = (max(shorter, round(w * scale)), max(shorter, round(h * scale)))  # (width, height) for cv2
    # INTER_AREA averages the source pixels when shrinking (no aliasing); INTER_LINEAR when enlarging.
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _crop(frame: np.ndarray, size: int, offset: float = 0.5) -> np.ndarray:
    """Square crop, centred on the shorter side; `offset` in [0, 1] places it along the longer side."""
    h, w = frame.shape[:2]
    top = round((h - size) * (offset if h > w else 0.5))
    left = round((w - size) * (offset if w >= h else 0.5))
    return frame[top: top + size, left: left + size]


def normalise(frames: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """`(T, S, S, 3)` uint8 -> `(T, 3, S, S)` float32 in [0, 1], then (x - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_frames(frames: np.ndarray, pre: Preprocessing, crop_offset: float = 0.5) -> torch.Tensor:
    """`(T, H, W, 3)` uint8 RGB -> `(T, 3, crop, crop)` float32, normalised (`crop_offset`: see `spatial_crops`)."""
    _check(frames, pre)
    crops = [_crop(_resize_shorter(f, pre.resize_shorter), pre.crop_size, crop_offset) for f in frames]
    return normalise(np.stack(crops), pre)


def preprocess_frame(frame: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """One `(H, W, 3)` uint8 RGB frame -> `(3, crop, crop)`, through exactly the code of `preprocess_frames`."""
    return preprocess_frames(frame[None], pre)[0]


def spatial_crops(frames: np.ndarray, pre: Preprocessing, num_crops: int) -> torch.Tensor:
    """Test-time spatial views, `(num_crops, T, 3, S, S)`: 1 = the centre crop; 3 = start, centre and end of
    the longer side (left/centre/right for landscape, top/centre/bottom for portrait), as in SlowFast."""
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    offsets = [0.5] if num_crops == 1 else np.linspace(0.0, 1.0, num_crops).tolist()
    return torch.stack([preprocess_frames(frames, pre, o) for o in offsets])


def augment_frames(frames: np.ndarray, pre: Preprocessing, rng: np.random.Generator,
                   scale: tuple[float, float] = (0.7, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                   flip: bool = False) -> torch.Tensor:
    """Training view, `(T, 3, crop, crop)`: ONE random crop (area fraction in `scale`, aspect in `ratio`) and
    one flip decision for the whole clip, so the motion between frames is preserved, resized to `crop_size`
    and normalised like the test path. Flipping is off by default: it turns a left-moving clip into a
    right-moving one, which is another class in Something-Something-like data."""
    _check(frames, pre)
    cv2 = _cv2()
    h, w = frames.shape[1:3]
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    ch = int(min(h, max(1, round(np.sqrt(area / aspect)))))
    cw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    mirror = flip and rng.random() < 0.5
    size = pre.crop_size
    interp = cv2.INTER_AREA if min(ch, cw) > size else cv2.INTER_LINEAR
    out = []
    for f in frames:
        f = cv2.resize(f[top: top + ch, left: left + cw], (size, size), interpolation=interp)
        out.append(f[:, ::-1] if mirror else f)
    return normalise(np.stack(out), pre)
