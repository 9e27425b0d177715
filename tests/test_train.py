"""Training: a few steps on generated clips, DDP on 2 CPU processes, resuming, and bad files skipped."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from xvit_edge.data.synthetic import write_dataset
from xvit_edge.model.weights import load_checkpoint
from xvit_edge.train import TrainConfig, train
from xvit_edge.train.__main__ import build_parser, main


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, classes=["move_left", "move_right", "grow", "shrink"], train_per_class=4, val_per_class=2,
                  frames=8, size=48, workers=0, progress=False)
    return out


def config(synth: Path, out: Path, **kw) -> TrainConfig:
    base = dict(train_data=str(synth / "train"), val_data=str(synth / "val"), out=str(out), preset="xvit_test",
                epochs=1, batch_size=4, workers=0, lr=1e-3, warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def test_training_writes_checkpoints_history_and_curve(synth, tmp_path):
    result = train(config(synth, tmp_path, epochs=2))
    assert [h["epoch"] for h in result.state["history"]] == [1, 2]
    assert result.state["history"][-1]["val_clips"] == 8
    model, meta = load_checkpoint(tmp_path / "last.pt")
    assert meta.labels == ["grow", "move_left", "move_right", "shrink"] and meta.config.num_classes == 4
    assert meta.extra["train_state"]["step"] == 8
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, result.model.state_dict()[key])
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "training_curve.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2


def test_loss_decreases_on_an_easy_task(tmp_path):
    """Dark clips vs bright clips: the whole pipeline (decode, augment, model, optimizer) must learn it."""
    from xvit_edge.data.synthetic import write_video

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for name, level in (("dark", 40), ("bright", 200)):
            for i in range(count):
                frames = np.clip(level + rng.normal(0, 30, (8, 48, 48, 3)), 0, 255).astype(np.uint8)
                (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
                write_video(tmp_path / split / name / f"{i}.mp4", frames, fps=10)
    result = train(config(tmp_path, tmp_path / "run", epochs=10, lr=3e-3, label_smoothing=0.0, warmup_epochs=1))
    history = result.state["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_top1"] == 1.0


def test_resume_continues_where_it_stopped(synth, tmp_path):
    train(config(synth, tmp_path, epochs=1))
    resumed = train(config(synth, tmp_path, epochs=2, resume=str(tmp_path / "last.pt")))
    assert [h["epoch"] for h in resumed.state["history"]] == [1, 2]
    assert resumed.state["step"] == 8


def test_bad_files_are_skipped_counted_and_reported(synth, tmp_path, caplog):
    data = tmp_path / "data"
    for split in ("train", "val"):
        for cls in (synth / split).iterdir():
            (data / split / cls.name).mkdir(parents=True)
            for clip in cls.iterdir():
                (data / split / cls.name / clip.name).write_bytes(clip.read_bytes())
    (data / "train" / "grow" / "corrupt.mp4").write_bytes(b"\x00not a video" * 50)
    (data / "train" / "grow" / "empty.mp4").write_bytes(b"")
    good = next((data / "train" / "shrink").iterdir()).read_bytes()
    (data / "train" / "shrink" / "truncated.mp4").write_bytes(good[: len(good) // 2])
    result = train(config(data, tmp_path / "run", train_data=str(data / "train"), val_data=str(data / "val")))
    assert result.state["history"][0]["train_skipped"] == 3
    assert "corrupt.mp4" in caplog.text and "skipped 3 unreadable clips" in caplog.text


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(cfg)
    torch.save(result.model.state_dict(), f"{out}/rank{rank}.pt")


def run_ddp(cfg: TrainConfig, out: Path, timeout: float = 240) -> tuple[dict, dict]:
    """Train on 2 CPU processes (gloo); returns both ranks' final state dicts. Fails instead of hanging."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.spawn(_ddp_worker, args=(2, port, cfg, str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP training did not finish in {timeout} s (ranks out of step?)")
    return (torch.load(out / "rank0.pt", weights_only=True), torch.load(out / "rank1.pt", weights_only=True))


def test_ddp_two_cpu_processes_end_with_identical_weights(synth, tmp_path):
    cfg = config(synth, tmp_path, val_data=None, batch_size=2, max_steps=3)
    r0, r1 = run_ddp(cfg, tmp_path)
    init = train.__globals__["build_model"](cfg, 4)[0].state_dict()  # same seed: the weights before training
    changed = [k for k in r0 if not torch.equal(r0[k], init[k])]
    assert changed, "training changed no weight"
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0)
    assert load_checkpoint(tmp_path / "last.pt")[1].extra["train_state"]["step"] == 3


def test_ddp_rank_with_only_a_bad_clip_keeps_in_step(synth, tmp_path):
    """A batch of nothing but unreadable clips on one rank must not hang the other at the all-reduce."""
    data = tmp_path / "data"
    for cls in (synth / "train").iterdir():
        (data / cls.name).mkdir(parents=True)
        for clip in sorted(cls.iterdir())[:2]:
            (data / cls.name / clip.name).write_bytes(clip.read_bytes())
    (data / "grow" / "zz_corrupt.mp4").write_bytes(b"junk" * 100)
    cfg = config(synth, tmp_path, train_data=str(data), val_data=None, batch_size=1)
    r0, r1 = run_ddp(cfg, tmp_path)
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0)
    history = load_checkpoint(tmp_path / "last.pt")[1].extra["train_state"]["history"]
    assert history[0]["train_skipped"] >= 1


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and action.option_strings[-1] in text


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["--train-data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere: no such folder or list file" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"junk")
    from xvit_edge.data.synthetic import write_video

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        write_video(tmp_path / "data" / cls / "x.mp4", np.zeros((8, 32, 32, 3), np.uint8), fps=5)
    assert main(["--train-data", str(tmp_path / "data"), "--preset", "xvit_test", "--init", str(tmp_path / "bad.pt"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_set_parses_yes_no_fields_and_refuses_what_it_cannot_set(capsys):
    from xvit_edge.train.__main__ import parse_overrides

    # "false" is a non-empty string: taken literally it would switch the field on
    assert parse_overrides(["causal=true", "temporal_embed=FALSE", "attention=space_only", "shift_div=8"]) == {
        "causal": True, "temporal_embed": False, "attention": "space_only", "shift_div": 8}
    for bad, says in (("causal=maybe", "expected true or false"), ("num_classes=3", "comes from the training data"),
                      ("no_such_field=1", "not an XViTConfig field")):
        with pytest.raises(SystemExit) as e:
            main(["--train-data", "x", "--set", bad])
        assert e.value.code == 2 and says in capsys.readouterr().err


def test_time_reversed_clips_join_the_batch_with_their_partner_labels():
    from xvit_edge.train.reversal import partner_table, with_time_reversed

    labels = ["a", "b", "c", "d"]
    partner = partner_table([("a", "c"), ("d", "b")], labels)
    assert partner.tolist() == [2, 3, 0, 1]
    clips = torch.randn(3, 4, 3, 2, 2)
    out, target = with_time_reversed(clips, torch.tensor([0, 3, 1]), partner)
    assert target.tolist() == [0, 3, 1, 2, 1, 3]
    torch.testing.assert_close(out[:3], clips)
    torch.testing.assert_close(out[3:], clips[:, [3, 2, 1, 0]])
    alone = partner_table([("a", "c")], labels)  # b and d have no partner: nothing to add for them
    out, target = with_time_reversed(clips, torch.tensor([1, 3, 0]), alone)
    assert target.tolist() == [1, 3, 0, 2] and len(out) == 4
    out, target = with_time_reversed(clips, torch.tensor([1, 3, 1]), alone)
    assert len(out) == 3
    with pytest.raises(ValueError, match="already paired"):
        partner_table([("a", "b"), ("b", "c")], labels)


def test_paired_reversals_leave_an_order_blind_model_nothing_to_tell_a_pair_apart_with():
    """The reason for pairing: for features that ignore frame order, a clip and its reversal push the two
    classes of a pair equally and oppositely; with the clip alone they do not."""
    from xvit_edge.train.reversal import partner_table, with_time_reversed

    partner = partner_table([("fwd", "bwd")], ["fwd", "bwd", "other"])
    clips, labels = torch.randn(4, 5, 3, 2, 2), torch.tensor([0, 1, 0, 2])
    head = torch.nn.Linear(12, 3)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)  # equal scores: the pair not told apart

    def pair_gap_grad(x, y):
        head.zero_grad()
        torch.nn.functional.cross_entropy(head(x.mean(1).flatten(1)), y).backward()  # order-blind
        return head.weight.grad[0] - head.weight.grad[1]  # what moves fwd's score against bwd's

    assert pair_gap_grad(clips, labels).abs().max() > 1e-3
    torch.testing.assert_close(pair_gap_grad(*with_time_reversed(clips, labels, partner)), torch.zeros(12))


def test_reverse_pairs_come_from_the_benchmark_or_the_user(synth, tmp_path, capsys):
    from xvit_edge.train.reversal import resolve_pairs

    labels = ["grow", "move_left", "move_right", "shrink"]
    # the generator writes meta.json beside train/; its pairs of classes that were not written are left out
    assert resolve_pairs("auto", synth / "train", labels) == [("move_right", "move_left"), ("grow", "shrink")]
    assert resolve_pairs("none", synth / "train", labels) == []
    assert resolve_pairs("auto", tmp_path, labels) == []  # the user's own data: no meta.json, no pairs
    assert resolve_pairs("grow:shrink", tmp_path, labels) == [("grow", "shrink")]
    (tmp_path / "meta.json").write_text('{"pairs": [["grow", "shrink", "move_left"]]}')
    with pytest.raises(ValueError, match=r"meta.json: not a JSON object whose 'pairs' is a list of \[class, class\]"):
        resolve_pairs("auto", tmp_path, labels)
    for bad, says in (("grow:nothing", "not in the training data: ['nothing']"), ("grow", "expected 'class:class'")):
        assert main(["--train-data", str(synth / "train"), "--preset", "xvit_test", "--reverse-pairs", bad,
                     "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
        assert says in capsys.readouterr().err


def test_focus_phase_trains_on_its_classes_alone_first_then_on_all(synth, tmp_path, monkeypatch, capsys):
    """`focus` passes draw only the named classes' clips (labels and their reversal partners), recorded as
    epoch 0 with its validation; the main epochs then draw every class; a resumed run does not redo it."""
    import xvit_edge.train.loop as loop

    seen: list[set[int]] = []
    real = loop.with_time_reversed

    def spy(clips, labels, partner):
        seen.append(set(labels.tolist()))
        return real(clips, labels, partner)

    monkeypatch.setattr(loop, "with_time_reversed", spy)
    # labels: grow 0, move_left 1, move_right 2, shrink 3; 8 clips of grow/shrink = 2 batches per pass
    result = train(config(synth, tmp_path, epochs=1, focus=("grow", "shrink"), focus_epochs=2, reverse_pairs="none"))
    focus_batches, main_batches = seen[:4], seen[4:]
    assert set().union(*focus_batches) == {0, 3} and set().union(*main_batches) == {0, 1, 2, 3}
    history = result.state["history"]
    assert [h["epoch"] for h in history] == [0, 1] and [h["step"] for h in history] == [4, 8]
    assert history[0]["val_clips"] == 8  # validated on every class
    seen.clear()
    resumed = train(config(synth, tmp_path, epochs=2, focus=("grow", "shrink"), focus_epochs=2,
                           reverse_pairs="none", resume=str(tmp_path / "last.pt")))
    assert len(seen) == 4 and [h["epoch"] for h in resumed.state["history"]] == [0, 1, 2]
    with pytest.raises(ValueError, match="not among the training labels"):
        train(config(synth, tmp_path / "bad", focus=("spin",), focus_epochs=1))
    for focus, passes in ((("grow",), 0), ((), 3), (("grow",), -1)):  # the API refuses what the CLI refuses
        with pytest.raises(ValueError, match="go together"):
            TrainConfig(train_data=str(synth / "train"), focus=focus, focus_epochs=passes)
    with pytest.raises(SystemExit) as exit_:
        main(["--train-data", str(synth / "train"), "--preset", "xvit_test", "--focus", "grow,shrink",
              "--out", str(tmp_path / "o"), "--workers", "0"])
    assert exit_.value.code == 2
    assert "--focus and --focus-epochs go together" in capsys.readouterr().err
