"""The streaming runtime: ring buffer, Recognizer in both modes over every backend, smoothing, capture."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from clips import frame_ids, real_clip_vp9, write_indexed_clip  # noqa: F401 - fixture
from fakes import FakeCapture, FakeOpener
from xvit_edge import create_model
from xvit_edge.data.transforms import preprocess_frames
from xvit_edge.data.video import read_all
from xvit_edge.model.weights import save_checkpoint
from xvit_edge.streaming import (NO_ACTION, CaptureError, FrameBuffer, FrameSource, LiveStats, ModelLoadError,
                                 RateMeter, Recognizer, Smoother)
from xvit_edge.streaming.smoothing import EMA, MajorityVote

# ------------------------------------------------------------------------------------------------ ring buffer


def test_ring_buffer_returns_the_last_frames_in_order_in_fixed_memory():
    buf = FrameBuffer(4, (3, 2, 2))
    storage, out, nbytes = buf._data.data_ptr(), buf._clip.data_ptr(), buf.nbytes
    for i in range(11):
        buf.push(torch.full((3, 2, 2), float(i)))
        clip = buf.clip()
        want = list(range(max(0, i - 3), i + 1))
        assert clip[:, 0, 0, 0].tolist() == want and len(buf) == len(want) and buf.full == (i >= 3)
        assert clip.data_ptr() == out  # the output clip is reused, never reallocated
    assert buf._data.data_ptr() == storage and buf.nbytes == nbytes == 2 * 4 * 12 * 4
    buf.reset()
    assert len(buf) == 0 and buf.clip().shape == (0, 3, 2, 2)


# -------------------------------------------------------------------------------------------------- smoothing


def test_ema_and_threshold():
    labels = ["a", "b"]
    s = Smoother(labels, "ema", threshold=0.6, alpha=0.5)
    d = s.update(np.array([0.9, 0.1]))
    assert (d.label, d.index) == ("a", 0) and d.confidence == pytest.approx(0.9)
    d = s.update(np.array([0.1, 0.9]))  # (0.9 + 0.1) / 2 = 0.5 for both: below the threshold
    assert (d.label, d.index) == (NO_ACTION, -1) and d.confidence == pytest.approx(0.5)
    d = s.update(np.array([0.1, 0.9]))  # a 0.3, b 0.7
    assert d.label == "b" and d.confidence == pytest.approx(0.7)
    s.reset()
    assert s.update(np.array([0.2, 0.8])).confidence == pytest.approx(0.8)
    ema = EMA(0.25)
    ema.update(np.array([1.0, 0.0]))
    assert_close(torch.from_numpy(ema.update(np.array([0.0, 1.0]))), torch.tensor([0.75, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha"):
        EMA(0)


def test_majority_vote_with_no_action_and_ties():
    s = Smoother(["a", "b"], "vote", threshold=0.5, window=3)
    seq = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.45, 0.55], [0.4, 0.6], [0.48, 0.52]]
    labels = [s.update(np.array(p)).label for p in seq]
    # votes: a | a,b -> tie, most recent b | a,b,a -> a | b,a,b -> b | a,b,b -> b | b,b,b
    assert labels == ["a", "b", "a", "b", "b", "b"]
    s = Smoother(["a", "b"], "vote", threshold=0.95, window=3)
    d = [s.update(np.array([0.9, 0.1])) for _ in range(2)][-1]
    assert d.label == NO_ACTION and d.confidence == pytest.approx(0.9)
    vote = MajorityVote(2)
    assert vote.update(1, 0.6) == (1, 0.6) and vote.update(2, 0.8) == (2, 0.8) and vote.update(2, 0.6) == (2, 0.7)
    with pytest.raises(ValueError, match="smoothing"):
        Smoother(["a"], "median")


def test_stats():
    meter = RateMeter(window=5)
    for i in range(10):
        meter.tick(i * 0.1)
    assert meter.rate == pytest.approx(10.0)
    stats = LiveStats(window=3)
    for ms in (5.0, None, 1.0, 2.0, 100.0):
        stats.record(ms)
    snap = stats.snapshot(capture_fps=30.0, captured=9, dropped=4)
    assert snap.latency_ms == 2.0 and snap.processed == 5 and snap.dropped == 4
    assert "dropped 4/9" in snap.line()


# ------------------------------------------------------------------------------------------------ recognizer


@pytest.fixture(scope="module")
def real_frames(real_clip_vp9):  # noqa: F811 - the fixture
    """Seven RGB frames of the real clip (so the preprocessing runs on real, strided data)."""
    return read_all(real_clip_vp9, max_frames=7)


@pytest.mark.parametrize("form", ["checkpoint", "executorch", "onnx"])
def test_incremental_equals_whole_clip_through_the_recognizer(form, stream_artifacts, causal_test_model, real_frames):
    """T frames pushed one by one through the incremental step (eager, the exported .pte, the .onnx)
    give the whole-clip logits of the eager model on the same T frames."""
    t = causal_test_model.config.num_frames
    clip = preprocess_frames(real_frames[:t], stream_artifacts["preprocessing"])
    with torch.no_grad():
        want = causal_test_model(clip[None])[0]
    assert want.abs().max() > 0.5  # logits of a size at which 1e-4 is a real bound
    rec = Recognizer.load(stream_artifacts[form] if form == "checkpoint" else stream_artifacts[form].path)
    assert rec.mode == "incremental" and rec.labels == stream_artifacts["labels"]
    out = [rec.push(f) for f in real_frames[:t]]
    assert all(p is None for p in out[:-1]) and out[-1].frame == t
    assert_close(out[-1].logits, want, rtol=0, atol=1e-4)
    assert out[-1].probs.sum() == pytest.approx(1.0, abs=1e-5)
    if form == "checkpoint":  # the clip mode over the same frames agrees, and slides over later frames
        clip_rec = Recognizer.load(stream_artifacts["checkpoint"], mode="clip")
        preds = [clip_rec.push(f) for f in real_frames]
        assert_close(preds[t - 1].logits, want, rtol=0, atol=1e-5)
        later = preprocess_frames(real_frames[-t:], stream_artifacts["preprocessing"])
        with torch.no_grad():
            assert_close(preds[-1].logits, causal_test_model(later[None])[0], rtol=0, atol=1e-5)
    rec.reset()
    assert rec.push(real_frames[0]) is None and rec.frames_seen == 1


def test_int8_stream_artifact_runs_incrementally_through_the_recognizer(int8_stream, causal_test_model, real_frames):
    """The int8 step exported to ExecuTorch (session fixture) behind the same interface, on the real clip's
    frames: T frames pushed one by one give the converted int8 step's logits, close to the float model's."""
    from xvit_edge.export.verify import sqnr_db
    from xvit_edge.quantize.stream import StreamedClips

    cfg = causal_test_model.config
    t = cfg.num_frames
    frames = preprocess_frames(real_frames[:t], int8_stream["preprocessing"])
    rec = Recognizer.load(int8_stream["executorch"].path)
    assert rec.mode == "incremental" and rec.model.kind == "executorch" and rec.labels == int8_stream["labels"]
    out = [rec.push(f) for f in real_frames[:t]][-1]
    with torch.no_grad():
        want = StreamedClips(int8_stream["quantized"].converted_step, cfg)(frames[None])[0]
        fp32 = causal_test_model(frames[None])[0]
    assert sqnr_db(want, out.logits) >= 30 and out.logits.argmax() == want.argmax()
    assert sqnr_db(fp32, out.logits) > 15


def test_a_quantized_checkpoint_runs_its_int8_graph_not_its_float_weights(int8_stream, causal_test_model, real_frames):
    """A quantized checkpoint holds float weights too; the apps run what it was quantized to: the converted
    int8 step incrementally, the converted int8 model in clip mode."""
    from xvit_edge.quantize.stream import StreamedClips

    cfg = causal_test_model.config
    t = cfg.num_frames
    frames = preprocess_frames(real_frames[:t], int8_stream["preprocessing"])
    q = int8_stream["quantized"]
    with torch.no_grad():
        want_step = StreamedClips(q.converted_step, cfg)(frames[None])[0]
        want_clip = q.converted(frames[None])[0]
        fp32 = causal_test_model(frames[None])[0]
    for mode, want in (("incremental", want_step), ("clip", want_clip)):
        rec = Recognizer.load(int8_stream["checkpoint"], mode)
        assert rec.model.precision == "int8" and rec.mode == mode
        out = [rec.push(f) for f in real_frames[:t]][-1]
        torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-5)
        assert not torch.allclose(out.logits, fp32, atol=1e-3)  # not the float weights


def test_recognizer_feeds_a_step_the_state_its_sidecar_describes(causal_test_model):
    """An artifact exported by another xvit_edge version carries its own state layout (older ones kept whole
    keys and values): the runtime sizes the state from the artifact's sidecar, not from today's config."""
    from pathlib import Path

    from xvit_edge import Preprocessing
    from xvit_edge.model.streaming import StreamState
    from xvit_edge.streaming.backends import LoadedModel

    cfg = causal_test_model.config
    old = {"keys": [cfg.depth, 1, 2, cfg.num_tokens, cfg.embed_dim], "values": [cfg.depth, 1, 2, cfg.num_tokens,
           cfg.embed_dim], "frame_tokens": [1, cfg.num_frames, cfg.embed_dim]}
    assert old != StreamState.shapes(cfg)
    fed = []

    def step(inputs):
        fed.append([list(x.shape) for x in inputs[1:]])
        return [torch.zeros(1, cfg.num_classes), *(torch.ones(shape) for shape in old.values())]

    labels = [str(i) for i in range(cfg.num_classes)]
    model = LoadedModel(Path("old.onnx"), "onnx", cfg, labels, Preprocessing.for_size(cfg.img_size), {"stream": step},
                        old)
    rec = Recognizer(model)
    for _ in range(2):
        rec.push_preprocessed(torch.zeros(3, cfg.img_size, cfg.img_size))
    assert fed == [list(old.values())] * 2


def test_clip_mode_runs_every_stride_frames(stream_artifacts):
    rec = Recognizer.load(stream_artifacts["checkpoint"], mode="clip", stride=3)
    frames = np.random.default_rng(0).integers(0, 256, (12, 40, 50, 3), dtype=np.uint8)
    ran = [i + 1 for i, f in enumerate(frames) if rec.push(f) is not None]
    assert ran == [4, 7, 10]


def test_recognizer_refuses_what_a_model_cannot_do(stream_artifacts, tmp_path):
    with pytest.raises(ValueError, match=r"stream-mode export\); use mode 'incremental'"):
        Recognizer.load(stream_artifacts["onnx"].path, mode="clip")
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, create_model("xvit_test"))
    assert Recognizer.load(plain).mode == "clip"
    with pytest.raises(ValueError, match="causal_variant"):
        Recognizer.load(plain, mode="incremental")
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(stream_artifacts["onnx"].path.read_bytes())
    with pytest.raises(ModelLoadError, match="no sidecar lonely.onnx.json"):
        Recognizer.load(lonely)
    with pytest.raises(ModelLoadError, match="only on Apple platforms"):
        Recognizer.load(tmp_path / "model.mlpackage")
    with pytest.raises(ModelLoadError, match="no such file"):
        Recognizer.load(tmp_path / "missing.pte")
    # the sidecar's path works as well as the artifact's
    assert Recognizer.load(stream_artifacts["onnx"].sidecar).model.kind == "onnx"


# --------------------------------------------------------------------------------------------------- capture


def _drain(source: FrameSource, delay: float = 0.0) -> list:
    frames = []
    with source:
        while (f := source.read()) is not None:
            frames.append(f)
            time.sleep(delay)
    return frames


def test_every_frame_mode_reads_a_file_in_order_without_drops(tmp_path):
    path = write_indexed_clip(tmp_path / "indexed.mp4", 40)
    source = FrameSource(str(path), every_frame=True, queue_size=2)
    frames = _drain(source, delay=0.002)  # a reader slower than decoding: the capture thread waits
    assert frame_ids(np.stack([f.bgr[..., ::-1] for f in frames])) == list(range(40))
    assert [f.index for f in frames] == list(range(40)) and source.dropped == 0
    assert source.end_message.endswith("end of file after 40 frames") and source.error is None


def test_newest_frame_mode_drops_stale_frames_and_counts_them():
    source = FrameSource(0, opener=FakeOpener([FakeCapture(list(range(60)))]), retries=0, retry_delay=0)
    frames, error = [], None
    try:
        frames = []
        source.start()
        while (f := source.read()) is not None:
            frames.append(f)
            time.sleep(0.02)  # a slow model: the fake camera delivers its 60 frames far faster
    except CaptureError as e:  # the fake camera ends like one that was unplugged
        error = e
    finally:
        source.stop()
    indices = [f.index for f in frames]
    assert indices == sorted(indices) and source.captured == 60
    assert source.dropped > 0 and source.dropped + len(frames) == 60
    assert "lost" in str(error)


def test_lost_camera_is_retried_then_stops_with_a_clear_error(caplog):
    opener = FakeOpener([FakeCapture(list(range(5))), CaptureError("camera 0: cannot be opened (unplugged)")])
    source = FrameSource(0, every_frame=True, opener=opener, retries=2, retry_delay=0.01)
    frames = []
    with caplog.at_level(logging.WARNING, logger="xvit_edge"), pytest.raises(CaptureError) as e:
        with source:
            while (f := source.read()) is not None:
                frames.append(f)
    assert len(frames) == 5 and opener.calls == 3  # the first open, then two reconnection attempts
    assert str(e.value) == "camera 0: lost: no frame after 2 reconnection attempts; stopping"
    assert "reconnecting, attempt 1 of 2" in caplog.text and "reconnecting, attempt 2 of 2" in caplog.text


def test_camera_that_comes_back_keeps_streaming():
    opener = FakeOpener([FakeCapture([0, 1, 2]), FakeCapture([3, 4])])
    source = FrameSource(0, every_frame=True, opener=opener, retries=1, retry_delay=0.01)
    frames = []
    with pytest.raises(CaptureError, match="lost"), source:
        while (f := source.read()) is not None:
            frames.append(f)
    assert [int(f.bgr[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]


def test_undecodable_frames_of_a_file_are_reported_and_skipped(caplog):
    opener = FakeOpener([FakeCapture([0, 1, None, 3, None, None, 6])])
    source = FrameSource("clip.mp4", every_frame=True, opener=opener, retries=2)
    with caplog.at_level(logging.WARNING, logger="xvit_edge"):
        frames = _drain(source)
    assert [int(f.bgr[0, 0, 0]) for f in frames] == [0, 1, 3, 6] and source.decode_failures == 3
    assert "1 frame(s) failed to decode after frame 1; skipped" in caplog.text
    assert source.end_message == "clip.mp4: end of file after 4 frames"


def test_sources_that_cannot_be_used(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        FrameSource(str(tmp_path / "missing.mp4")).start()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(CaptureError, match="not a video"):
        FrameSource(str(junk)).start()
    nothing = FrameSource("empty.mp4", opener=FakeOpener([FakeCapture([])]), retries=0)
    with pytest.raises(CaptureError, match="no frame decodes"), nothing:
        nothing.read()


@pytest.mark.parametrize("target", ["executorch", "onnx"])
def test_artifact_and_sidecar_are_checked_against_each_other(stream_artifacts, tmp_path, target):
    """Before the first frame: the sidecar's schema, that it was written for this very file (sha256 recorded
    at export), that the file is what its extension says, and that the artifact's shapes are the sidecar's.
    Each mismatch is one ModelLoadError that names the file; the files are left as they were."""
    import hashlib
    import json
    import shutil

    art = stream_artifacts[target]
    original = json.loads(art.sidecar.read_text())
    assert original["artifact_sha256"] == hashlib.sha256(art.path.read_bytes()).hexdigest()
    model = tmp_path / art.path.name
    side = tmp_path / art.sidecar.name
    shutil.copy(art.path, model)
    before = hashlib.sha256(model.read_bytes()).hexdigest()

    def refused(sidecar, match: str, path=model) -> None:
        side.write_text(json.dumps(sidecar))
        with pytest.raises(ModelLoadError, match=match):
            Recognizer.load(path)

    refused([original], "not an xvit_edge sidecar")
    refused({k: v for k, v in original.items() if k != "target"}, "the sidecar lacks target")
    refused({**original, "labels": original["labels"][:-1]}, "labels are not 10 names")
    refused({**original, "artifact_sha256": "0" * 64}, "written for another file")
    clip_like = {**original, "mode": "clip", "input": {**original["input"], "shape": [1, 4, 3, 32, 32]},
                 "state_shapes": {}}  # a sidecar true to itself, but not to the artifact beside it
    del clip_like["artifact_sha256"]
    refused(clip_like, r"does not match its sidecar: inputs")
    fake = tmp_path / ("fake" + model.suffix)
    fake.write_bytes(b"not a model at all " * 50)
    (tmp_path / f"fake.{target}.json").write_text(json.dumps({**original, "artifact": fake.name,
                                                               "artifact_sha256": None}))
    with pytest.raises(ModelLoadError, match="not an (ExecuTorch program|ONNX model)"):
        Recognizer.load(fake)
    side.write_text(json.dumps(original))
    assert Recognizer.load(model).model.kind == target
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
