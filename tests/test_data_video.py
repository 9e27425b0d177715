"""Decoding (real clips from packages and generated ones), sampling, preprocessing, datasets, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import real_clip
from xvit_edge.config import Preprocessing
from xvit_edge.data.datasets import VideoClipDataset, collate_skip_bad, list_samples, load_samples
from xvit_edge.data.synthetic import write_video
from xvit_edge.data.transforms import augment_frames, preprocess_frame, preprocess_frames, spatial_crops
from xvit_edge.data.video import (VideoError, count_frames, multiview_indices, probe, read_frames, segment_indices,
                                  uniform_indices)

PRE = Preprocessing.for_size(32)


def indexed_clip(path, n: int = 20, size: int = 48):
    """Frame i is a flat grey of level 10 * i (survives lossy coding), with a red top-left block."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i] = 10 * i
        frames[i, :16, :16] = (255, 0, 0)
    write_video(path, frames, fps=10)
    return path


def frame_ids(frames: np.ndarray) -> list[int]:
    return [round(float(f[24:, 24:].mean()) / 10) for f in frames]


@pytest.mark.parametrize("name,frames,size", [("sports2d_demo.mp4", 230, (1768, 994)),
                                              ("bigbuckbunny.mp4", 132, (1280, 720))])
def test_real_clips_decode(name, frames, size):
    path = real_clip(name)
    info = probe(path)
    assert (info.frames, (info.width, info.height)) == (frames, size)
    assert count_frames(path) == frames
    clip = read_frames(path, segment_indices(frames, 8, train=False))
    assert clip.shape == (8, size[1], size[0], 3) and clip.dtype == np.uint8
    assert clip.std() > 10  # real content, not a blank decode


def test_real_clip_through_the_dataset_with_test_time_views():
    path = str(real_clip("sports2d_demo.mp4"))
    ds = VideoClipDataset([(path, 0)], ["jumping"], 8, Preprocessing.for_size(64), train=False, num_clips=2,
                          num_crops=3)
    clips, label = ds[0]
    assert clips.shape == (6, 8, 3, 64, 64) and label == 0


def test_read_frames_returns_the_frames_asked_for_in_rgb(tmp_path):
    path = indexed_clip(tmp_path / "idx.mp4")
    frames = read_frames(path, [3, 0, 19, 3])
    assert frame_ids(frames) == [3, 0, 19, 3]
    r, g, b = frames[0, 4:12, 4:12].reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60  # red stays red: BGR was converted


def test_indices_past_the_end_are_resampled_within_the_file(tmp_path, caplog):
    path = indexed_clip(tmp_path / "short.mp4", n=10)
    frames = read_frames(path, [0, 9, 19])  # the container has 10 frames
    assert frame_ids(frames) == [0, 4, 9] and "only 10 frames decode" in caplog.text


def test_segment_sampling():
    assert segment_indices(16, 8, train=False) == [1, 3, 5, 7, 9, 11, 13, 15]
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = segment_indices(16, 8, train=True, rng=rng)
        assert all(2 * s <= i < 2 * s + 2 for s, i in enumerate(idx))
    assert segment_indices(3, 8, train=False) == [0, 0, 0, 1, 1, 2, 2, 2]  # short: repeats, in order


def test_uniform_sampling():
    assert uniform_indices(100, 8, 4, train=False) == [35 + 4 * i for i in range(8)]  # centred: 35..63
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = uniform_indices(100, 8, 4, train=True, rng=rng)
        assert np.diff(idx).tolist() == [4] * 7 and 0 <= idx[0] and idx[-1] < 100
    assert uniform_indices(10, 8, 4, train=False) == list(range(1, 9))  # stride shrinks to fit
    assert uniform_indices(5, 8, 2, train=False) == [0, 1, 2, 3, 4, 4, 4, 4]


def test_multiview_sampling_spreads_clips():
    views = multiview_indices(100, 8, 3, "uniform", 4)
    assert views[0][0] == 0 and views[-1][-1] == 99 and len({v[0] for v in views}) == 3
    seg = multiview_indices(16, 4, 2, "segment")
    assert seg == [[1, 5, 9, 13], [3, 7, 11, 15]]


def test_preprocessing_shapes_and_normalisation():
    frames = np.full((4, 90, 160, 3), 255, np.uint8)
    out = preprocess_frames(frames, PRE)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    expected = (1 - torch.tensor(PRE.mean)) / torch.tensor(PRE.std)
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_one_frame_is_preprocessed_exactly_as_inside_a_clip():
    frames = np.random.default_rng(0).integers(0, 256, (3, 120, 90, 3), dtype=np.uint8)
    clip = preprocess_frames(frames, PRE)
    for i in range(3):
        assert torch.equal(preprocess_frame(frames[i], PRE), clip[i])


def test_three_spatial_crops_cover_the_longer_side():
    frames = np.zeros((2, 40, 120, 3), np.uint8)
    frames[:, :, :40] = 255  # bright left third
    crops = spatial_crops(frames, Preprocessing(resize_shorter=32, crop_size=32), 3)
    assert crops.shape == (3, 2, 3, 32, 32)
    assert crops[0].mean() > crops[1].mean() > crops[2].mean() - 1e-6


def test_augmentation_uses_one_crop_for_the_whole_clip():
    frame = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames = np.stack([frame] * 5)
    out = augment_frames(frames, PRE, np.random.default_rng(0), scale=(0.3, 0.6), flip=True)
    assert out.shape == (5, 3, 32, 32)
    assert all(torch.equal(out[0], out[i]) for i in range(1, 5))


@pytest.mark.parametrize("kind,match", [
    ("missing", "no such file"),
    ("empty", "the file is empty"),
    ("corrupt", "cannot open it as a video"),
    ("truncated", "cannot open it as a video|no frame could be decoded"),
])
def test_bad_videos_get_a_clear_error_naming_the_file(tmp_path, kind, match):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data = real_clip("bigbuckbunny.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match=match) as e:
        read_frames(path, [0, 1])
    assert str(path) in str(e.value)


def test_clip_shorter_than_the_model_needs_is_reported_and_skipped(tmp_path):
    path = indexed_clip(tmp_path / "three.mp4", n=3)
    ds = VideoClipDataset([(str(path), 0)], ["a"], 8, PRE, train=True)
    with pytest.raises(VideoError, match="3 frames, fewer than the 8"):
        ds.load(0)
    batch = collate_skip_bad([ds[0]])
    assert batch.clips is None and batch.skipped == [str(path)]


def test_list_file_with_names_integers_and_a_missing_file(tmp_path):
    a, b = indexed_clip(tmp_path / "a.mp4", n=8), indexed_clip(tmp_path / "b.mp4", n=8)
    lst = tmp_path / "train.csv"
    lst.write_text("path,label\na.mp4,walk\nb.mp4,jump\nmissing.mp4,walk\n")
    with pytest.raises(FileNotFoundError, match=r"train.csv:4: names .*missing.mp4"):
        list_samples(lst)
    samples, labels = list_samples(lst, on_missing="skip")
    assert labels == ["jump", "walk"] and samples == [(str(a), 1), (str(b), 0)]
    (tmp_path / "ids.txt").write_text("a.mp4,1\nb.mp4,0\n")
    assert list_samples(tmp_path / "ids.txt")[1] == ["0", "1"]
    samples, labels = load_samples(lst, labels=["walk", "jump"])  # validation follows the training labels
    assert samples == [(str(a), 0), (str(b), 1)]
