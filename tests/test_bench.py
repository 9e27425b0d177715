"""The benchmark command writes its JSON, plot and table (figures themselves are not asserted: they are
measurements, and the machine is noisy)."""

from __future__ import annotations

import json

import pytest

from xvit_edge.bench.__main__ import main
from xvit_edge.bench.report import END, START
from clips import real_clip_h264  # noqa: F401 - fixture


def test_bench_quick_writes_results_table_and_plot(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\nold\n{END}\ntail\n")
    assert main(["--quick", "--preset", "xvit_test", "--out", str(tmp_path), "--threads", "1",
                 "--update-readme", str(readme)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["complexity"]["rows"]
    assert {r["attention"] for r in rows} == {"mixing", "space_only", "divided", "joint"}
    assert {r["frames"] for r in rows} == {4, 8, 16}
    assert all(r["median_ms"] > 0 and r["repeats"] == 3 and r["warmup"] == 1 for r in rows)
    assert results["peak"]["1"]["gflops"] > 0
    # --quick times the default checkpoint (the full run adds the preset with random weights): every form,
    # int8 included, passes the export's parity check and is timed
    assert "deployment" not in results and results["settings"]["quick"]
    d = results["deployment_default"]
    assert d["checkpoint"] == "xvit_edge_nano_synthetic.pt" and not d["failed"]
    assert d["int8_checkpoint"] == "xvit_edge_nano_synthetic_int8.pt"
    # --quick: the clip model only (the full run adds the streaming step; `speedups` is tested on its own)
    forms = ("eager fp32", "executorch fp32", "onnx fp32", "executorch int8", "onnx int8", "executorch int8 dynamic")
    assert {(r["form"], r["mode"], r["threads"]) for r in d["rows"]} == {(f, "clip", 1) for f in forms}
    # int8 against fp32 per runtime and scheme, from the rows of the same run; XNNPACK partitions per .pte
    assert {(s["runtime"], s["scheme"], s["mode"]) for s in d["speedups"]} == {
        ("executorch", "static", "clip"), ("onnx", "static", "clip"), ("executorch", "dynamic", "clip")}
    assert all((r["partitions"] or 0) >= 1 if r["runtime"] == "executorch" else r["partitions"] is None
               for r in d["rows"])
    int8 = [r for r in d["rows"] if "int8" in r["form"]]
    assert all(r["parity_sqnr_db"] >= 30 and r["parity_max_abs_diff"] is None for r in int8)
    fp32 = [r for r in d["rows"] if r["form"] in ("executorch fp32", "onnx fp32")]
    assert all(r["parity_max_abs_diff"] <= 1e-4 and r["parity_sqnr_db"] is None for r in fp32)
    assert all(r["median_ms"] > 0 and r["size_mb"] > 0 for r in d["rows"])
    assert d["coreml"]["weight_dtypes"] and set(d["coreml"]["weight_dtypes"]) == {"FLOAT16"}
    # Core ML parity beside the others: each precision's saved program evaluated against eager
    c = d["coreml"]["parity"]
    assert set(c) == {"fp32", "fp16", "int8"} and c["fp32"]["max_abs_diff"] <= 1e-4
    assert c["fp16"]["sqnr_db"] >= 45 and c["int8"]["sqnr_db"] >= 30 and c["int8"]["top1_agreement"] >= 0.99
    assert d["coreml"]["int8_scheme"] == "W8A8"  # from the shipped int8 checkpoint
    assert (tmp_path / "complexity.png").stat().st_size > 1000
    s = results["streaming"]
    assert [(r["runtime"], r["mode"]) for r in s["per_frame"][0]["rows"]] == [("eager", "clip"), ("eager", "incremental")]
    assert s["per_frame"][0]["clip_over_incremental"]["eager"] > 0
    e2e = s["end_to_end"][0]
    assert e2e["resolution"] == [1280, 720] and e2e["frames"] == 40 and e2e["fps"] > 0
    assert [r["subject"] for r in s["end_to_end"]] == ["xvit_test (random weights)", "xvit_edge_nano_synthetic.pt"]
    assert s["memory"]["frames"] == 2000 and s["memory"]["rss_mb_at_100"] > 0
    assert (tmp_path / "streaming.png").stat().st_size > 1000
    text = readme.read_text()
    assert "old" not in text and "| mixing | 8 |" in text and text.endswith("tail\n")
    assert "**Streaming**" in text and "| incremental | xvit_test (random weights) | 1 | bigbuckbunny.mp4 1280x720 |" in text
    assert "no `accuracy.json` yet" in text
    # --report-only measures nothing: it re-reads results.json and quotes the accuracy files now present
    accuracy = {"recipe": {"preset": "xvit_test", "img_size": 32, "num_frames": 4, "epochs": 1,
                           "classes": ["move_right", "move_left"]}, "threads": 1, "models": {}}
    (tmp_path / "accuracy_pair.json").write_text(json.dumps(accuracy))
    # a full run adds the preset's deployment table (random weights); the report renders it from results.json
    results["deployment"] = {**d, "checkpoint": None, "preset": "xvit_test"}
    # and the browser section (headless Chromium), which the report renders as its own table
    results["web"] = {"rows": [{"model": "default", "config": "xvit_test", "precision": "fp32", "img_size": 32,
                                "threads": 2, "latency_median_ms": 3.3, "latency_p90_ms": 4.5,
                                "preprocess_median_ms": 1.5, "fps": 29.5}],
                      "onnxruntime_web": "1.0", "camera": {"size": [640, 480], "fps": 30}, "browser": "Chromium"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["--report-only", "--out", str(tmp_path), "--update-readme", str(readme)]) == 0
    again = readme.read_text()
    assert "one time-reversed pair: move_right vs move_left" in again and "no `accuracy.json` yet" not in again
    assert "the default checkpoint `xvit_edge_nano_synthetic.pt`" in again and "`xvit_test`, random weights" in again
    assert again.count("| mixing | 8 |") == text.count("| mixing | 8 |")
    assert "**In the browser**" in again and "| default (xvit_test, fp32) | 32 | 2 | 3.3 ms (4.5) | 1.5 ms | 29.5 |" in again
    assert main(["--report-only", "--out", str(tmp_path / "nothing")]) == 2


def test_bad_outputs_are_refused_before_measuring(tmp_path, capsys):
    """A half-hour run must not end on an output it cannot write: each is checked first, in one line, exit 2."""
    a_file, plain = tmp_path / "a_file", tmp_path / "plain.md"
    a_file.write_text("keep")
    plain.write_text("no markers\n")
    cases = [(["--out", str(a_file)], "is a file; name a folder"),
             (["--out", str(tmp_path / "b"), "--update-readme", str(tmp_path / "none.md")], "none.md: no such file"),
             (["--out", str(tmp_path / "b"), "--update-readme", str(plain)], "block to update"),
             (["--report-only", "--out", str(tmp_path / "b")], "run python -m xvit_edge.bench first")]
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "results.json").write_text('{"not": "ours"}')
    cases.append((["--report-only", "--out", str(edited)], "not a results file of python -m xvit_edge.bench"))
    for argv, says in cases:
        assert main(["--quick", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert a_file.read_text() == "keep" and plain.read_text() == "no markers\n" and not (tmp_path / "b").exists()
    assert (edited / "results.json").read_text() == '{"not": "ours"}'


def test_accuracy_bench_quick_trains_scores_and_saves_a_checkpoint(tmp_path):
    """The pipeline end to end on a tiny generated set. Accuracy itself is not asserted (one epoch), but the
    space-only baseline's direction accuracy must be exactly 50%: the two clips of a pair hold the same frames
    in opposite order, so a frame-averaging model gets exactly one of each pair right."""
    from xvit_edge.bench.accuracy import main as accuracy_main
    from xvit_edge.model.weights import load_checkpoint

    ckpt = tmp_path / "causal.pt"
    assert accuracy_main(["--quick", "--out", str(tmp_path), "--models", "causal", "space_only",
                          "--save-checkpoint", str(ckpt), "--tag", "t", "--quantize", "causal"]) == 0
    results = json.loads((tmp_path / "accuracy_t.json").read_text())
    assert set(results["models"]) == {"causal", "space_only"} and results["complete"] is True
    space = results["models"]["space_only"]
    assert space["clips"] == 24 and space["direction_accuracy"] == 0.5
    # two temporal views: a reversed clip's views hold its partner's frames, swapped, so still exactly 50%
    assert space["multiview"]["views"] == {"clips": 2, "crops": 1} and space["multiview"]["direction_accuracy"] == 0.5
    assert results["models"]["causal"]["config"]["causal"] is True
    assert results["command"].startswith("python -m xvit_edge.bench.accuracy --quick") and str(tmp_path) not in results["command"]
    assert (tmp_path / "accuracy_t.png").stat().st_size > 1000
    quant = json.loads((tmp_path / "quantization_t.json").read_text())
    assert set(quant) >= {"fp32", "ptq", "qat"} and quant["model"] == "xvit_test" and "causal" in quant["source"]
    assert quant["fp32"]["clips"] == quant["qat"]["clips"] == 24 and 0 <= quant["qat"]["top1"] <= 1
    model, meta = load_checkpoint(ckpt)
    assert model.config.causal and meta.extra["provenance"]["variant"] == "causal"
    assert meta.extra["provenance"]["held_out"]["top1"] == results["models"]["causal"]["top1"]


def test_accuracy_command_is_recorded_without_this_machines_paths():
    from xvit_edge.bench.accuracy import _portable

    argv = ["--data", "/somewhere/runs/synthetic", "--epochs", "3", "--out", "/x/out", "--work=/x/w",
            "--save-checkpoint", "/x/c.pt", "--data=/elsewhere/pair"]
    assert _portable(argv) == ["--data", "synthetic", "--epochs", "3", "--data=pair"]


def test_accuracy_bench_jobs_train_the_same_models_side_by_side(tmp_path):
    """--jobs 2 trains each model in its own process. With one thread per model either way, the models and
    their scores are the same as one after the other: only the wall time changes."""
    from xvit_edge.bench.accuracy import main as accuracy_main

    common = ["--quick", "--out", str(tmp_path), "--models", "causal", "space_only"]
    assert accuracy_main([*common, "--threads", "1", "--tag", "one"]) == 0
    assert accuracy_main([*common, "--threads", "2", "--jobs", "2", "--tag", "two"]) == 0
    one, two = (json.loads((tmp_path / f"accuracy_{t}.json").read_text()) for t in ("one", "two"))
    assert (one["jobs"], two["jobs"]) == (1, 2) and list(two["models"]) == ["causal", "space_only"]
    for name in ("causal", "space_only"):
        a, b = one["models"][name], two["models"][name]
        assert a["threads"] == b["threads"] == 1
        assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
        assert (a["top1"], a["direction_accuracy"]) == (b["top1"], b["direction_accuracy"])
    assert accuracy_main([*common, "--jobs", "0"]) == 2


def test_accuracy_bench_resumes_a_run_of_the_same_recipe(tmp_path, capsys):
    """Given the same --work, a finished (or stopped) run is picked up, not retrained; a run of another
    recipe there is refused, since continuing it would splice two learning-rate schedules."""
    import dataclasses

    from xvit_edge.bench.accuracy import QUICK, RecipeMismatch, resume_point
    from xvit_edge.bench.accuracy import main as accuracy_main

    common = ["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--models", "space_only"]
    assert accuracy_main([*common, "--tag", "a"]) == 0
    assert accuracy_main([*common, "--tag", "b"]) == 0
    a, b = (json.loads((tmp_path / f"accuracy_{t}.json").read_text())["models"]["space_only"] for t in "ab")
    assert a["resumed_at_epoch"] is None and b["resumed_at_epoch"] == QUICK.epochs == len(b["history"])
    assert b["top1"] == a["top1"] and b["history"] == a["history"]
    other = dataclasses.replace(QUICK, lr=QUICK.lr / 2)
    with pytest.raises(RecipeMismatch, match="another recipe"):
        resume_point(tmp_path / "work" / "space_only", other, "space_only")
    assert resume_point(tmp_path / "fresh", other, "space_only") is None  # stamps the new run's recipe
    assert json.loads((tmp_path / "fresh" / "recipe.json").read_text())["recipe"]["lr"] == QUICK.lr / 2


def test_accuracy_bench_refuses_a_folder_without_clips(tmp_path, capsys):
    from xvit_edge.bench.accuracy import main as accuracy_main

    assert accuracy_main(["--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no train/ folder" in capsys.readouterr().err
    # a focus curriculum needs its classes (among the benchmark's) and its passes, both
    for bad in (["--focus", "rotate_cw", "rotate_ccw"], ["--focus-epochs", "4"],
                ["--focus", "spin", "--focus-epochs", "4"]):
        assert accuracy_main([*bad, "--out", str(tmp_path)]) == 2
        assert "--focus names classes among --classes" in capsys.readouterr().err


def test_report_quotes_every_accuracy_run_and_the_int8_comparison():
    from xvit_edge.bench.report import accuracy_lines

    model = {"params": 272076, "top1": 0.975, "direction_accuracy": 0.975, "pair_accuracy": 1.0, "clips": 200,
             "train_seconds": 300.0}
    run = {"recipe": {"preset": "xvit_edge_nano", "img_size": 64, "num_frames": 8, "epochs": 12,
                      "classes": ["move_right", "move_left"], "scratch_init": "mimetic"},
           "data_meta": {"train_per_class": 400, "val_per_class": 100}, "threads": 2,
           "command": "python -m xvit_edge.bench.accuracy --classes move_right move_left",
           "models": {"causal": model, "space_only": {**model, "top1": 0.5, "direction_accuracy": 0.5}}}
    quant = {"model": "xvit_edge_nano", "classes": 2, "options": {"calib_batches": 8, "epochs": 1, "lr": 5e-5},
             "fp32": {"top1": 0.975}, "ptq": {"top1": 0.95, "sqnr_db": 18.0, "top1_agreement": 0.97},
             "qat": {"top1": 0.97, "sqnr_db": 25.0, "top1_agreement": 0.99}}
    text = "\n".join(accuracy_lines([run, {**run, "recipe": {**run["recipe"], "classes": [str(i) for i in range(12)]}}],
                                   [quant]))
    assert "one time-reversed pair: move_right vs move_left" in text and "12 classes in 6 time-reversed pairs" in text
    assert "| causal | 0.27 | 97.5% | 97.5% | 100.0% | 200 | 300 |" in text  # a file without test views
    assert "| space_only | 0.27 | 50.0% | 50.0% |" in text and "(mimetic init)" in text
    views = {**run, "models": {"causal": {**model, "multiview": {"top1": 0.98}}}}
    with_views = "\n".join(accuracy_lines([views]))
    assert "| causal | 0.27 | 97.5% | 98.0% | 97.5% |" in with_views and "| top-1, 2 clips |" in with_views
    resumed = {**run, "models": {"causal": {**model, "resumed_at_epoch": 16}}}
    assert "| 200 | 300 (from epoch 17 on: resumed) |" in "\n".join(accuracy_lines([resumed]))
    focused = {**run, "recipe": {**run["recipe"], "reverse_pairs": "auto", "focus": ["rotate_cw", "rotate_ccw"],
                                 "focus_epochs": 16}}
    assert ("each clip beside its time reversal in the batch, first 16 passes over rotate_cw and rotate_ccw alone"
            in "\n".join(accuracy_lines([focused])))
    assert "| PTQ int8 | 95.0% | -2.5 points | 18.0 | 97.0% |" in text and "| QAT int8 | 97.0% | -0.5 points |" in text
    assert "no `accuracy.json` yet" in "\n".join(accuracy_lines(None))


def test_executorch_end_to_end_runs_on_the_threads_it_reports(stream_artifacts, real_clip_h264):
    # ExecuTorch's pool is sized once a process; the bench runs each ExecuTorch row in a fresh process so that
    # its "threads" column is the pool that actually ran (the parent has already loaded a program here)
    from xvit_edge.bench.streaming import _in_subprocess
    from xvit_edge.export.executorch import load_pte, pool_threads

    load_pte(stream_artifacts["executorch"].path)
    parent = pool_threads()
    wanted = 1 if parent != 1 else 2
    row = _in_subprocess("end_to_end", "the test run", checkpoint=stream_artifacts["executorch"].path,
                         video=real_clip_h264, mode="incremental", threads=wanted, max_frames=6, warmup=2)
    assert row["runtime_threads"] == wanted and row["threads"] == wanted
    assert row["frames"] == 6 and row["fps"] > 0 and row["resolution"] == [1280, 720]


def test_timing_subprocess_feeds_a_streaming_step_its_frame_and_state(stream_artifacts, causal_test_model):
    from xvit_edge.bench.deployment import measure_in_subprocess
    from xvit_edge.model.streaming import StreamState

    cfg = causal_test_model.config
    shapes = [[1, cfg.in_chans, cfg.img_size, cfg.img_size]] + [list(t.shape) for t in StreamState.zeros(cfg).as_tuple()]
    for runtime, artifact in (("executorch", "executorch"), ("onnxruntime", "onnx")):
        (timing,) = measure_in_subprocess(runtime, [(stream_artifacts[artifact].path, shapes)], 1, repeats=3, warmup=1)
        assert timing["median_ms"] > 0 and timing["repeats"] == 3
    with pytest.raises(RuntimeError, match="timing executorch"):  # a wrong input count fails loudly
        measure_in_subprocess("executorch", [(stream_artifacts["executorch"].path, shapes[:1])], 1, repeats=1, warmup=0)


def test_timed_calls_take_turns_so_a_slowdown_lands_on_each_alike():
    from xvit_edge.bench.timing import time_calls

    order = []
    timings = time_calls([lambda: order.append("a"), lambda: order.append("b")], repeats=3, warmup=1, threads=1)
    assert order == ["a", "b"] * 4  # one warm-up round, then three timed rounds, each calling both in turn
    assert [(t.repeats, t.warmup) for t in timings] == [(3, 1), (3, 1)]
    assert all(0 <= t.min_ms <= t.median_ms <= t.p90_ms for t in timings)
    order.clear()
    time_calls([lambda: order.append("a"), lambda: order.append("b")], repeats=3, warmup=1, threads=1,
               side_by_side=False)
    assert order == ["a"] * 4 + ["b"] * 4  # each in a block of its own, one after the other


def test_speedups_pair_each_int8_form_with_fp32_of_its_runtime_mode_and_threads():
    from xvit_edge.bench.deployment import speedups

    def row(form, mode, threads, ms):
        return {"form": form, "mode": mode, "threads": threads, "median_ms": ms}

    rows = [row("executorch fp32", "clip", 1, 10.0), row("executorch int8", "clip", 1, 4.0),
            row("executorch int8 dynamic", "clip", 1, 5.0), row("executorch fp32", "clip", 2, 6.0),
            row("executorch int8", "clip", 2, 3.0), row("onnx fp32", "stream", 1, 2.0), row("onnx int8", "stream", 1, 4.0),
            row("onnx int8", "clip", 1, 1.0)]  # no fp32 beside it: no ratio
    got = {(s["runtime"], s["scheme"], s["mode"], s["threads"]): s["int8_speedup"] for s in speedups(rows)}
    assert got == {("executorch", "static", "clip", 1): 2.5, ("executorch", "dynamic", "clip", 1): 2.0,
                   ("executorch", "static", "clip", 2): 2.0, ("onnx", "static", "stream", 1): 0.5}
