"""Decoding (real VP9 and h264 clips, index-encoded generated clips), frame sampling, preprocessing, bad files."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from clips import frame_ids, indexed_frames, real_clip_h264, real_clip_vp9, write_clip, write_indexed_clip  # noqa: F401
from xvit_edge.config import Preprocessing
from xvit_edge.data.transforms import augment_frames, preprocess_frame, preprocess_frames, spatial_crops
from xvit_edge.data.video import (VideoError, count_frames, multiview_indices, probe, read_all, read_frames,
                                  segment_indices, uniform_indices)

PRE = Preprocessing.for_size(32)  # resize_shorter 37, crop 32


# ------------------------------------------------------------------------------------------ real clips

@pytest.mark.parametrize("fixture,frames,fps,size", [("real_clip_vp9", 230, 30.0, (1768, 994)),
                                                     ("real_clip_h264", 132, 25.0, (1280, 720))])
def test_real_clips_decode(request, fixture, frames, fps, size):
    path = request.getfixturevalue(fixture)
    info = probe(path)
    assert (info.frames, info.fps, (info.width, info.height)) == (frames, fps, size)
    assert count_frames(path) == frames  # the container's count is right for both
    clip = read_frames(path, segment_indices(frames, 8, train=False))
    assert clip.shape == (8, size[1], size[0], 3) and clip.dtype == np.uint8
    assert clip.std() > 20  # real content, not a blank decode
    # RGB order: the bottom quarter of both clips is sunlit grass, so blue is the weakest channel there.
    r, g, b = clip[:, 3 * size[1] // 4:].reshape(-1, 3).mean(0)
    assert b < r - 15 and b < g - 15


def test_sequential_grab_retrieve_gives_the_frames_a_full_decode_gives(real_clip_h264):
    everything = read_all(real_clip_h264)
    picks = [131, 0, 57, 57, 100]
    assert np.array_equal(read_frames(real_clip_h264, picks), everything[picks])


def test_truncated_vp9_is_resampled_within_what_decodes(real_clip_vp9, tmp_path, caplog):
    """The VP9 clip's index sits at the front, so its first half opens and claims all 230 frames."""
    data = real_clip_vp9.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    assert probe(path).frames == 230
    decoded = count_frames(path)
    assert 50 < decoded < 230
    with caplog.at_level(logging.WARNING):
        frames = read_frames(path, [0, 229])
    assert "claims 230 frames but only" in caplog.text and str(path) in caplog.text
    assert np.array_equal(frames, read_frames(real_clip_vp9, [0, 229 * decoded // 230]))
    with pytest.raises(VideoError, match=rf"truncated: the container claims 230 frames but only {decoded} decode"):
        read_frames(path, [0, 229], min_frames=200)


# ------------------------------------------------------------------------------------------ generated clips

def test_read_frames_returns_exactly_the_frames_asked_for_in_rgb(tmp_path):
    path = write_indexed_clip(tmp_path / "idx.mp4", 40)
    frames = read_frames(path, [7, 0, 39, 7, 12])  # any order, repeats
    assert frame_ids(frames) == [7, 0, 39, 7, 12]
    r, g, b = frames[:, :, 70].reshape(-1, 3).mean(0)
    assert r > 240 and g < 15 and b < 15  # written red, read red: BGR was converted


@pytest.mark.parametrize("sampling", ["segment", "uniform"])
def test_sampled_indices_decode_to_those_frames(tmp_path, sampling):
    path = write_indexed_clip(tmp_path / "idx.mp4", 48)
    rng = np.random.default_rng(0)
    idx = segment_indices(48, 8, train=True, rng=rng) if sampling == "segment" \
        else uniform_indices(48, 8, 4, train=True, rng=rng)
    assert frame_ids(read_frames(path, idx)) == idx


def test_indices_past_the_end_are_resampled_within_the_file(tmp_path, caplog):
    path = write_indexed_clip(tmp_path / "ten.mp4", 10)
    with caplog.at_level(logging.WARNING):
        frames = read_frames(path, [0, 9, 19])  # as if sampled from 20 frames
    assert frame_ids(frames) == [0, 4, 9] and "only 10 frames decode" in caplog.text
    with pytest.raises(VideoError, match=r"ten.mp4: 10 frames, fewer than the 16 needed"):
        read_frames(path, [0, 19], min_frames=16)


# ------------------------------------------------------------------------------------------ sampling

def test_segment_sampling():
    assert segment_indices(16, 8, train=False) == [1, 3, 5, 7, 9, 11, 13, 15]  # segment centres
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = segment_indices(16, 8, train=True, rng=rng)
        assert all(2 * s <= i < 2 * s + 2 for s, i in enumerate(idx))  # one frame inside each segment
        seen.update(idx)
    assert seen == set(range(16))  # every frame can be drawn
    assert segment_indices(3, 8, train=False) == [0, 0, 0, 1, 1, 2, 2, 2]  # short: repeats, in order (TSN)
    assert segment_indices(1, 4, train=True, rng=rng) == [0, 0, 0, 0]
    with pytest.raises(VideoError, match="0 frames"):
        segment_indices(0, 8, train=False)


def test_uniform_sampling():
    assert uniform_indices(100, 8, 4, train=False) == [35 + 4 * i for i in range(8)]  # centred: 35..63
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = uniform_indices(100, 8, 4, train=True, rng=rng)
        assert np.diff(idx).tolist() == [4] * 7 and idx[0] >= 0 and idx[-1] < 100
        starts.add(idx[0])
    assert len(starts) > 20 and max(starts) <= 71
    assert uniform_indices(10, 8, 4, train=False) == list(range(1, 9))  # too short for stride 4: stride 1
    assert uniform_indices(20, 8, 4, train=False) == [2, 4, 6, 8, 10, 12, 14, 16]  # largest stride that fits: 2
    assert uniform_indices(5, 8, 2, train=False) == [0, 1, 2, 3, 4, 4, 4, 4]  # fewer than T: last repeats
    with pytest.raises(VideoError):
        uniform_indices(0, 8, 2, train=True)


def test_multiview_sampling_spreads_the_clips():
    views = multiview_indices(100, 8, 3, "uniform", 4)
    assert [v[0] for v in views] == [0, 36, 71] and views[-1][-1] == 99
    assert all(np.diff(v).tolist() == [4] * 7 for v in views)
    assert multiview_indices(16, 4, 2, "segment") == [[1, 5, 9, 13], [3, 7, 11, 15]]
    assert multiview_indices(16, 8, 1, "segment") == [segment_indices(16, 8, train=False)]
    assert multiview_indices(100, 8, 1, "uniform", 4) == [uniform_indices(100, 8, 4, train=False)]
    with pytest.raises(ValueError, match="sampling"):
        multiview_indices(16, 4, 2, "dense")


# ------------------------------------------------------------------------------------------ preprocessing

def test_preprocessing_shapes_and_normalisation():
    frames = np.zeros((4, 90, 160, 3), np.uint8)
    frames[..., 0] = 255
    out = preprocess_frames(frames, PRE)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    mean, std = torch.tensor(PRE.mean), torch.tensor(PRE.std)
    expected = (torch.tensor([1.0, 0.0, 0.0]) - mean) / std
    torch.testing.assert_close(out.mean((0, 2, 3)), expected)
    torch.testing.assert_close(out.std((0, 2, 3)), torch.zeros(3))


def test_preprocessing_is_resize_shorter_centre_crop_normalise():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (2, 120, 200, 3), dtype=np.uint8)  # shrinks: INTER_AREA
    small = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)  # enlarges: INTER_LINEAR
    for frames, size, interp in ((big, (62, 37), cv2.INTER_AREA), (small, (56, 37), cv2.INTER_LINEAR)):
        resized = np.stack([cv2.resize(f, size, interpolation=interp) for f in frames])
        left, top = round((size[0] - 32) / 2), round((37 - 32) / 2)
        crop = torch.from_numpy(resized[:, top: top + 32, left: left + 32]).permute(0, 3, 1, 2).float() / 255
        expected = (crop - torch.tensor(PRE.mean).view(1, 3, 1, 1)) / torch.tensor(PRE.std).view(1, 3, 1, 1)
        assert torch.equal(preprocess_frames(frames, PRE), expected)


def test_one_frame_is_preprocessed_bit_for_bit_as_inside_a_clip():
    frames = np.random.default_rng(0).integers(0, 256, (5, 123, 91, 3), dtype=np.uint8)
    for pre in (PRE, Preprocessing(resize_shorter=256, crop_size=224)):  # shrinking and enlarging
        clip = preprocess_frames(frames, pre)
        for i in range(len(frames)):
            assert torch.equal(preprocess_frame(frames[i], pre), clip[i])


@pytest.mark.parametrize("shape", [(40, 120), (120, 40)])  # landscape: left/centre/right; portrait: top/centre/bottom
def test_three_spatial_crops_cover_the_longer_side(shape):
    ramp = np.linspace(0, 255, 120).astype(np.uint8)  # brightness grows along the longer side
    frames = np.broadcast_to((ramp[None, :] if shape[1] > shape[0] else ramp[:, None])[None, ..., None],
                             (2, *shape, 3)).copy()
    pre = Preprocessing(resize_shorter=32, crop_size=32)
    crops = spatial_crops(frames, pre, 3)
    assert crops.shape == (3, 2, 3, 32, 32)
    means = crops.mean((1, 2, 3, 4))
    assert means[0] < means[1] - 1 and means[1] < means[2] - 1  # start, centre, end: disjoint thirds
    assert torch.equal(spatial_crops(frames, pre, 1)[0], preprocess_frames(frames, pre))  # one crop = centre


def test_augmentation_takes_one_crop_for_the_whole_clip():
    frames = np.random.default_rng(1).integers(0, 256, (5, 64, 80, 3), dtype=np.uint8)
    clip = augment_frames(frames, PRE, np.random.default_rng(7), scale=(0.3, 0.6), flip=True)
    assert clip.shape == (5, 3, 32, 32)
    for i in range(5):  # each frame alone, with the same draws, gets the same crop as inside the clip
        alone = augment_frames(frames[i: i + 1], PRE, np.random.default_rng(7), scale=(0.3, 0.6), flip=True)
        assert torch.equal(alone[0], clip[i])
    crops = {augment_frames(frames, PRE, np.random.default_rng(s)).sum().item() for s in range(5)}
    assert len(crops) == 5  # the crop does change from draw to draw


def test_augmentation_flips_only_when_asked():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[:, :, :32] = 255  # bright left half
    def left_brighter(flip: bool, seed: int) -> bool:
        clip = augment_frames(frames, PRE, np.random.default_rng(seed), flip=flip)
        return bool(clip[..., :16].mean() > clip[..., 16:].mean())
    assert all(left_brighter(False, s) for s in range(20))  # motion direction is kept by default
    assert not all(left_brighter(True, s) for s in range(20))


def test_preprocessing_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((2, 8, 8, 3), np.float32), PRE)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        preprocess_frames(np.zeros((8, 8, 3), np.uint8), PRE)
    with pytest.raises(ValueError, match="1 <= crop_size <= resize_shorter, got 64 and 32"):
        preprocess_frames(np.zeros((1, 8, 8, 3), np.uint8), Preprocessing(resize_shorter=32, crop_size=64))


# ------------------------------------------------------------------------------------------ bad files

@pytest.mark.parametrize("kind,match", [
    ("missing", "no such file"),
    ("directory", "not a file"),
    ("empty", r"the file is empty \(0 bytes\)"),
    ("corrupt", "not a video OpenCV can open"),
    ("truncated_h264", "not a video OpenCV can open"),  # its index (moov) is at the end: cut off
    ("truncated_mp4v", "not a video OpenCV can open"),
])
def test_bad_files_raise_a_clear_error_naming_the_file(request, tmp_path, kind, match):
    path = tmp_path / f"{kind}.mp4"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "truncated_h264":
        data = request.getfixturevalue("real_clip_h264").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_mp4v":
        data = write_indexed_clip(tmp_path / "whole.mp4", 20).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    for read in (probe, count_frames, lambda p: read_frames(p, [0, 1])):
        with pytest.raises(VideoError, match=match) as e:
            read(path)
        assert str(path) in str(e.value)


def test_a_video_that_opens_but_decodes_nothing(tmp_path):
    """The container's index survives but its frame data is zeroed: opens, zero frames decode."""
    data = bytearray(write_clip(tmp_path / "whole.mp4", indexed_frames(10)).read_bytes())
    mdat = data.find(b"mdat")
    size = int.from_bytes(data[mdat - 4: mdat], "big")  # the box's size, header included
    data[mdat + 4: mdat - 4 + size] = bytes(size - 8)
    path = tmp_path / "blank.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(VideoError, match="zero frames decode") as e:
        read_frames(path, [0, 1])
    assert str(path) in str(e.value)
