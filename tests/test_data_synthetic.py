"""The synthetic temporal benchmark: paired classes differ only in frame order; files decode; seeds reproduce."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from xvit_edge.data import synthetic as S

T, SIZE = 8, 48


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def read_rgb(path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def test_classes_come_in_reversal_pairs():
    assert len(S.CLASSES) >= 10 and len(set(S.CLASSES)) == len(S.CLASSES)
    for c in S.CLASSES:
        assert S.PARTNER[c] != c and S.PARTNER[S.PARTNER[c]] == c


@pytest.mark.parametrize("forward,backward", S.PAIRS)
def test_partner_is_the_exact_time_reversal(forward, backward):
    for seed in range(3):
        a = S.generate_clip(forward, rng(seed), T, SIZE)
        b = S.generate_clip(backward, rng(seed), T, SIZE)
        assert a.shape == (T, SIZE, SIZE, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b[::-1])
        assert np.abs(a.astype(int) - a[::-1]).mean() > 0.5  # not a palindrome: order carries the label


def test_same_seed_same_frames_other_seed_other_frames():
    for c in S.CLASSES:
        a = S.generate_clip(c, rng(7), T, SIZE)
        np.testing.assert_array_equal(a, S.generate_clip(c, rng(7), T, SIZE))
        assert not np.array_equal(a, S.generate_clip(c, rng(8), T, SIZE))


@pytest.mark.parametrize("forward,backward", S.PAIRS)
def test_order_invariant_statistics_are_equal_across_a_pair(forward, backward):
    """What a frame-averaging model sees (the set of frames, and so the mean image) is the same for both
    classes of a pair over the dataset's paired clips: such a model is exactly at chance on the pair."""
    clips = {c: np.stack([S.generate_clip(c, S.clip_rng(0, "train", c, i), T, 32) for i in range(8)])
             for c in (forward, backward)}
    a, b = clips[forward], clips[backward]
    np.testing.assert_array_equal(a.sum(axis=(0, 1), dtype=np.int64), b.sum(axis=(0, 1), dtype=np.int64))
    for ca, cb in zip(a, b):
        assert sorted(f.tobytes() for f in ca) == sorted(f.tobytes() for f in cb)
    # Different clips of one class do differ (the statistic is not trivially constant).
    assert not np.array_equal(a[0].mean(0), a[1].mean(0))


def clean_clip(class_name: str, seed: int) -> np.ndarray:
    """The clip with clutter, texture, background and noise removed: a white object (an arrow for rotations,
    whose orientation is measurable) and a red occluder on black."""
    p = S.sample_params(class_name, rng(seed), T, SIZE)
    layers = []
    for layer in p.layers:
        if layer.role == "clutter":
            continue
        color = (255.0, 255.0, 255.0) if layer.role == "object" else (255.0, 0.0, 0.0)
        shape = "arrow" if layer.role == "object" and class_name.startswith("rotate") else layer.shape
        layers.append(dataclasses.replace(layer, texture="solid", colors=(color, color), shape=shape))
    return S.render(p.replace(background=np.zeros_like(p.background), layers=tuple(layers), noise_std=0.0))


def event_measure(forward: str, clip: np.ndarray) -> np.ndarray:
    """Per frame, a pixel quantity that the forward class increases."""
    obj = clip[..., 1].astype(np.float64) / 255  # white object: green channel (the occluder has none)
    ys, xs = np.mgrid[: clip.shape[1], : clip.shape[2]]
    area = obj.sum(axis=(1, 2))
    if forward == "move_right":
        return (obj * xs).sum(axis=(1, 2)) / area
    if forward == "move_down":
        return (obj * ys).sum(axis=(1, 2)) / area
    if forward == "rotate_cw":  # orientation from second moments (y down: a growing angle turns clockwise)
        cx, cy = (obj * xs).sum(axis=(1, 2)) / area, (obj * ys).sum(axis=(1, 2)) / area
        dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
        mu20, mu02, mu11 = ((obj * m).sum(axis=(1, 2)) for m in (dx * dx, dy * dy, dx * dy))
        theta = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)
        step = (np.diff(theta) + math.pi / 2) % math.pi - math.pi / 2  # orientation is defined mod 180 deg
        return np.degrees(np.concatenate([[0.0], np.cumsum(step)]))
    if forward in ("grow", "appear"):
        return area
    if forward == "cover":
        return -area  # visible object area shrinks as the occluder slides over it
    raise AssertionError(forward)


@pytest.mark.parametrize("forward,backward", S.PAIRS)
def test_labels_mean_what_they_say(forward, backward):
    """On clean renders the forward class's event goes one way and its partner's the other way."""
    for seed in range(4):
        m_f = event_measure(forward, clean_clip(forward, seed))
        m_b = event_measure(forward, clean_clip(backward, seed))
        change = m_f[-1] - m_f[0]
        assert change == pytest.approx(m_b[0] - m_b[-1])
        if forward in ("move_right", "move_down"):
            assert change > 0.25 * SIZE
        elif forward == "rotate_cw":  # short clips turn less: the cap bounds each step, not the whole turn
            assert change > 15
        elif forward == "grow":
            assert m_f[-1] > 2.5 * m_f[0]
        elif forward == "appear":
            assert m_f[0] == 0 and m_f[-1] > 20
        else:  # cover: fully visible, then fully covered
            assert m_f[0] < -20 and m_f[-1] > -0.5


def test_rotation_steps_stay_below_half_the_shapes_symmetry():
    """A turn of half a symmetry period or more reads as the opposite turn. The cap bounds the eased profile's
    fastest step, so even a model sampling every 3rd written frame sees an unambiguous direction."""
    worst = 0.0
    for i in range(200):
        params = S.sample_params("rotate_cw", S.clip_rng(0, "val", "rotate_cw", i), 16, 128)
        obj = next(layer for layer in params.layers if layer.role == "object")
        step = np.degrees(np.diff(obj.angle[::3])).max()
        assert step > 0
        worst = max(worst, step / S.SYMMETRY_DEG[obj.shape])
    assert 0.3 < worst <= 3 * S.RANGES["max_step_of_symmetry"] + 1e-9 < 0.5


def test_write_video_decodes_with_right_count_size_and_colours(tmp_path):
    clip = S.generate_clip("rotate_cw", rng(0), T, 64)
    S.write_video(tmp_path / "a.mp4", clip, fps=15)
    back = read_rgb(tmp_path / "a.mp4")
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 8  # codec noise only
    solid = np.zeros((T, 32, 32, 3), np.uint8)
    solid[..., 0], solid[..., 2] = 220, 30  # red: a BGR/RGB swap would show
    S.write_video(tmp_path / "red.mp4", solid, fps=15)
    assert np.abs(read_rgb(tmp_path / "red.mp4").mean(axis=(0, 1, 2)) - (220, 0, 30)).max() < 8


def test_write_dataset_layout_pairs_and_worker_independence(tmp_path):
    classes = ["move_right", "move_left", "grow"]
    kw = dict(classes=classes, train_per_class=2, val_per_class=1, frames=T, size=32, seed=3, progress=False)
    summary = S.write_dataset(tmp_path / "a", workers=0, **kw)
    assert summary["classes"] == classes and summary["clips"] == {"train": 6, "val": 3}
    root = tmp_path / "a"
    assert (root / "labels.txt").read_text().split() == classes
    meta = json.loads((root / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["frames"] == T and meta["size"] == 32 and meta["classes"] == classes
    for split, n in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(classes)
        for c in classes:
            files = sorted((root / split / c).glob("*.mp4"))
            assert [f.name for f in files] == [f"{i:05d}.mp4" for i in range(n)]
            for f in files:
                assert read_rgb(f).shape == (T, 32, 32, 3)
    # Clip <id> of the two classes of a pair are reversals of each other, on disk too (up to codec noise).
    right, left = (read_rgb(root / "train" / c / "00001.mp4").astype(int) for c in ("move_right", "move_left"))
    assert np.abs(right - left[::-1]).mean() < 4 < np.abs(right - left).mean()
    # The same seed writes the same frames whatever the number of worker processes.
    S.write_dataset(tmp_path / "b", workers=2, **kw)
    for c in classes:
        np.testing.assert_array_equal(read_rgb(root / "val" / c / "00000.mp4"),
                                      read_rgb(tmp_path / "b" / "val" / c / "00000.mp4"))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown class"):
        S.generate_clip("jump", rng(0), T, SIZE)
    with pytest.raises(ValueError, match="classes"):
        S.write_dataset("unused", classes=["grow", "jump"], progress=False)


def test_cli_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        S.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--classes", "--train-per-class", "--val-per-class", "--frames", "--size", "--fps",
                 "--seed", "--workers"):
        assert flag in text


def test_cli_tiny_run_writes_the_layout(tmp_path):
    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "xvit_edge.data.synthetic", "--out", str(out), "--classes", "appear", "disappear",
           "--train-per-class", "1", "--val-per-class", "1", "--frames", "4", "--size", "32", "--workers", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote 2 train + 2 val clips of 2 classes" in res.stdout
    for split in ("train", "val"):
        for c in ("appear", "disappear"):
            assert read_rgb(out / split / c / "00000.mp4").shape == (4, 32, 32, 3)
    assert (out / "labels.txt").read_text() == "appear\ndisappear\n"
    assert json.loads((out / "meta.json").read_text())["fps"] == 15
