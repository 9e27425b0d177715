"""Sample lists (folder per class, path,label lists) and the clip dataset: views, seeding, skipping bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from clips import frame_ids, indexed_frames, real_clip_h264, real_clip_vp9, write_clip, write_indexed_clip  # noqa: F401
from xvit_edge.config import Preprocessing
from xvit_edge.data.datasets import (Batch, Skipped, VideoClipDataset, collate_skip_bad, folder_samples,
                                     list_samples, load_samples)
from xvit_edge.data.transforms import preprocess_frames
from xvit_edge.data.video import VideoError, read_frames, segment_indices

PRE = Preprocessing.for_size(32)


# ------------------------------------------------------------------------------------------ sample lists

def test_folder_samples(tmp_path):
    for cls, names in {"walk": ["b.mp4", "a.AVI", "notes.txt"], "jump": ["c.webm"], "empty": [],
                       ".hidden": ["d.mp4"]}.items():
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / n).write_bytes(b"x")
    samples, labels = folder_samples(tmp_path)
    assert labels == ["empty", "jump", "walk"]
    assert samples == [(str(tmp_path / "jump" / "c.webm"), 1), (str(tmp_path / "walk" / "a.AVI"), 2),
                       (str(tmp_path / "walk" / "b.mp4"), 2)]
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        folder_samples(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no videos"):
        folder_samples(tmp_path / "empty")


def test_list_with_names_a_header_and_relative_paths(tmp_path):
    (tmp_path / "clips").mkdir()
    a, b = (tmp_path / "clips" / "a.mp4"), (tmp_path / "clips" / "b.mp4")
    a.write_bytes(b"x"), b.write_bytes(b"x")
    lst = tmp_path / "train.csv"
    lst.write_text("\ufeffpath,label\nclips/a.mp4,walk\n\n# a comment\nclips/b.mp4, jump\n", encoding="utf-8")  # BOM
    samples, labels = list_samples(lst)
    assert labels == ["jump", "walk"] and samples == [(str(a), 1), (str(b), 0)]
    # relative to `root` instead of the list's folder; validation follows the training label order
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("a.mp4 walk\nb.mp4 jump\n")  # the space-separated txt form
    samples, labels = list_samples(tmp_path / "lists" / "val.txt", root=tmp_path / "clips", labels=["walk", "jump"])
    assert labels == ["walk", "jump"] and samples == [(str(a), 0), (str(b), 1)]
    assert load_samples(lst, labels=["walk", "jump"])[0] == [(str(a), 0), (str(b), 1)]


def test_list_with_integer_labels(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "ids.txt").write_text(f"{tmp_path / 'a.mp4'},2\n")  # absolute path
    samples, labels = list_samples(tmp_path / "ids.txt")
    assert samples == [(str(tmp_path / "a.mp4"), 2)] and labels == ["0", "1", "2"]
    assert list_samples(tmp_path / "ids.txt", labels=["x", "y", "z"])[0] == [(str(tmp_path / "a.mp4"), 2)]
    with pytest.raises(ValueError, match=r"ids.txt:1: label '2' is not one of the 2 labels"):
        list_samples(tmp_path / "ids.txt", labels=["x", "y"])


def test_list_naming_a_missing_file(tmp_path, caplog):
    (tmp_path / "a.mp4").write_bytes(b"x")
    lst = tmp_path / "train.csv"
    lst.write_text("path,label\na.mp4,walk\nmissing.mp4,walk\n")
    with pytest.raises(VideoError, match=r"train.csv:3: names .*missing.mp4, which does not exist"):
        list_samples(lst)
    with caplog.at_level(logging.WARNING):
        samples, _ = list_samples(lst, on_missing="skip")
    assert samples == [(str(tmp_path / "a.mp4"), 0)]
    assert "skipped 1 rows naming missing files" in caplog.text and "missing.mp4" in caplog.text


def test_malformed_lists(tmp_path):
    lst = tmp_path / "bad.csv"
    lst.write_text("a.mp4\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: expected 'path,label'"):
        list_samples(lst)
    lst.write_text("a.mp4,walk\nb.mp4,3\n")
    with pytest.raises(ValueError, match="mixes label names and integer labels"):
        list_samples(lst)
    with pytest.raises(ValueError, match="on_missing"):
        list_samples(lst, on_missing="ignore")
    with pytest.raises(FileNotFoundError, match="no such list file"):
        list_samples(tmp_path / "none.csv")


# ------------------------------------------------------------------------------------------ the dataset

def test_test_time_clip_is_the_centre_segments_preprocessed(tmp_path):
    path = str(write_indexed_clip(tmp_path / "a.mp4", 24))
    ds = VideoClipDataset([(path, 1)], ["a", "b"], 8, PRE, train=False)
    clip, label = ds[0]
    idx = segment_indices(24, 8, train=False)
    assert label == 1 and clip.shape == (8, 3, 32, 32)
    assert torch.equal(clip, preprocess_frames(read_frames(path, idx), PRE))


@pytest.mark.parametrize("sampling", ["segment", "uniform"])
def test_training_draws_are_seeded_by_seed_epoch_and_index(tmp_path, sampling):
    path = str(write_indexed_clip(tmp_path / "a.mp4", 40))
    make = lambda seed: VideoClipDataset([(path, 0)] * 2, ["a"], 4, PRE, train=True, sampling=sampling,  # noqa: E731
                                         stride=3, seed=seed)
    ds = make(0)
    first = ds[0][0]
    assert first.shape == (4, 3, 32, 32)
    assert torch.equal(first, make(0)[0][0])  # same seed, epoch, index: same clip
    assert not torch.equal(first, make(1)[0][0])
    assert not torch.equal(first, ds[1][0])  # another index of the same file draws differently
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0][0])


def test_multiview_clips_and_crops(tmp_path):
    path = str(write_clip(tmp_path / "wide.mp4", np.repeat(indexed_frames(30), 2, axis=2)))  # 64x160
    ds = VideoClipDataset([(path, 0)], ["a"], 4, PRE, train=False, sampling="uniform", stride=2,
                          num_clips=2, num_crops=3)
    views, _ = ds[0]
    assert views.shape == (6, 4, 3, 32, 32)  # 2 temporal clips x 3 spatial crops
    assert not torch.equal(views[0], views[3])  # the two clips are different frames
    assert not torch.equal(views[0], views[1])  # the crops are different places


def test_real_clip_with_test_time_views(real_clip_vp9):
    ds = VideoClipDataset([(str(real_clip_vp9), 0)], ["people"], 8, Preprocessing.for_size(64), train=False,
                          num_clips=2, num_crops=3)
    clips, label = ds[0]
    assert clips.shape == (6, 8, 3, 64, 64) and label == 0 and clips.std() > 0.3


def test_short_clips_are_skipped_unless_min_frames_allows_them(tmp_path):
    path = str(write_indexed_clip(tmp_path / "three.mp4", 3))
    ds = VideoClipDataset([(path, 0)], ["a"], 8, PRE, train=True)
    with pytest.raises(VideoError, match=r"three.mp4: 3 frames, fewer than the 8 needed"):
        ds.load(0)
    assert ds[0] == Skipped(path, ds[0].reason) and ds.bad_files[path] == 2
    tsn = VideoClipDataset([(path, 0)], ["a"], 8, PRE, train=False, min_frames=1)
    clip, _ = tsn[0]  # TSN: frames repeat
    expected = preprocess_frames(read_frames(path, [0, 0, 0, 1, 1, 2, 2, 2]), PRE)
    assert torch.equal(clip, expected)


@pytest.fixture
def bad_and_good(tmp_path, real_clip_vp9):
    good = [str(write_indexed_clip(tmp_path / f"good{i}.mp4", 20)) for i in range(3)]
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = real_clip_vp9.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 12])  # opens (index at the front), ~9 frames decode
    write_indexed_clip(tmp_path / "short.mp4", 4)
    bad = [str(tmp_path / n) for n in ("corrupt.mp4", "empty.mp4", "truncated.mp4", "short.mp4", "gone.mp4")]
    return good, bad


def test_bad_files_are_skipped_and_counted(bad_and_good, caplog):
    good, bad = bad_and_good
    samples = [(p, 0) for p in good[:1] + bad[:3] + good[1:] + bad[3:]]
    ds = VideoClipDataset(samples, ["a"], 16, PRE, train=True)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    skipped = [it for it in items if isinstance(it, Skipped)]
    assert [s.path for s in skipped] == bad and sum(ds.bad_files.values()) == 5
    assert "truncated: the container claims 230 frames but only" in next(s.reason for s in skipped
                                                                        if s.path.endswith("truncated.mp4"))
    assert all(p in caplog.text for p in bad)
    batch = collate_skip_bad(items)
    assert batch.clips.shape == (3, 16, 3, 32, 32) and batch.labels.tolist() == [0, 0, 0] and batch.skipped == bad
    assert collate_skip_bad([items[1], None]) == Batch(None, None, [bad[0], "<unknown>"])  # all bad: no clips


def test_skips_are_counted_through_dataloader_workers(bad_and_good):
    good, bad = bad_and_good
    ds = VideoClipDataset([(p, 0) for p in good + bad], ["a"], 16, PRE, train=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skip_bad)
    batches = list(loader)
    assert sorted(p for b in batches for p in b.skipped) == sorted(bad)  # the workers' skips reach the loop
    assert sum(len(b.labels) for b in batches if b.labels is not None) == 3
    assert not ds.bad_files  # the main process's counter never saw them: use Batch.skipped with workers


def test_dataset_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="sampling"):
        VideoClipDataset([], ["a"], 8, PRE, train=True, sampling="dense")
    with pytest.raises(ValueError, match="label index outside the 1 labels"):
        VideoClipDataset([("x.mp4", 3)], ["a"], 8, PRE, train=True)
