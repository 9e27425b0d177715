"""Accuracy on the synthetic temporal benchmark: space-time mixing against the space-only baseline.

    python -m xvit_edge.bench.accuracy [--quick] [--data DIR] [--out bench]

generates the benchmark (seeded; `xvit_edge.data.synthetic`) unless `--data` names one, trains every model
with one recipe (`xvit_edge.train`), evaluates on the held-out split and writes `accuracy.json` and
`accuracy.png`. Models: `mixing` (the paper), `causal` (the streaming variant, borrowing from t-1 and t-2)
and `space_only` (the paper's tw=0 baseline of the same size: per-frame attention, frames averaged).

Beside top-1 it reports *direction accuracy*: on each held-out clip, whether the true class scores above its
time-reversed partner (`move_left` vs `move_right`, ...). The two clips of a pair hold the same frames in
opposite order, so a frame-averaging model sits at 50% there by construction; only a model that sees
temporal order can rise above it. *Pair accuracy* is whether the prediction names the right pair at all.

`--save-checkpoint PATH` keeps one trained model (`--checkpoint-model`, default `causal`: it serves both
clip and incremental streaming) in the xvit_edge format, with the recipe and its held-out scores inside.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import XViTConfig, causal_variant, get_config, space_only_baseline
from ..data.synthetic import CLASSES, PAIRS, VERSION, write_dataset
from ..model.init import SCRATCH_INITS
from ..model.weights import load_checkpoint, save_checkpoint
from ..cli_types import HelpFormatter, thread_count

log = logging.getLogger(__name__)

VARIANTS: dict[str, Callable[[XViTConfig], XViTConfig]] = {
    "mixing": lambda c: c,
    "causal": causal_variant,
    "space_only": space_only_baseline,
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Data and training settings shared by every model of one benchmark run."""

    preset: str = "xvit_edge_nano"
    img_size: int = 64
    num_frames: int = 8
    classes: tuple[str, ...] = CLASSES
    train_per_class: int = 400
    val_per_class: int = 50
    source_frames: int = 16
    source_size: int = 128
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    warmup_epochs: float = 1.0
    scratch_init: str = "mimetic"
    reverse_pairs: str = "auto"  # each clip's time reversal joins its batch (xvit_edge/train/reversal.py)
    focus: tuple[str, ...] = ()  # curriculum: classes trained alone first (TrainConfig.focus)
    focus_epochs: int = 0
    seed: int = 0


QUICK = Recipe(preset="xvit_test", img_size=32, num_frames=4, train_per_class=4, val_per_class=2,
               source_frames=8, source_size=64, epochs=1, batch_size=8)


def config_overrides(recipe: Recipe, variant: str) -> dict[str, Any]:
    """`--set` style overrides turning the recipe's preset into `variant` (only the fields that change)."""
    base = get_config(recipe.preset, img_size=recipe.img_size, num_frames=recipe.num_frames)
    changed = VARIANTS[variant](base)
    overrides = {"img_size": recipe.img_size, "num_frames": recipe.num_frames}
    for f in dataclasses.fields(XViTConfig):
        if getattr(changed, f.name) != getattr(base, f.name):
            overrides[f.name] = getattr(changed, f.name)
    return overrides


def held_out_scores(model: torch.nn.Module, val_dir: Path, labels: list[str], preprocessing, batch_size: int,
                    clips: int = 1) -> dict[str, Any]:
    """Top-1, direction and pair accuracy of `model` on the clips of `val_dir`, and per-class top-1, with
    `clips` temporal views per video (`xvit_edge.evaluate`)."""
    from ..data.datasets import load_samples
    from ..evaluate import score

    samples, _ = load_samples(val_dir, labels=labels)
    pairs = [(a, b) for a, b in PAIRS if a in labels and b in labels]
    return score(model, samples, labels, preprocessing, pairs=pairs, clips=clips, batch_size=batch_size)


class RecipeMismatch(ValueError):
    """A `--work` folder holds a training run of another recipe."""


def resume_point(run_dir: Path, recipe: Recipe, variant: str) -> str | None:
    """The checkpoint to resume `variant` from when `run_dir` (under `--work`) holds a run of this same recipe
    (a stopped benchmark picks up where it stopped; a finished one is only evaluated again), else None. A run
    of another recipe there is refused: continuing it would mix two learning-rate schedules."""
    stamp = run_dir / "recipe.json"
    wanted = json.loads(json.dumps({"recipe": dataclasses.asdict(recipe), "variant": variant}))
    last = run_dir / "last.pt"
    if last.is_file():
        found = json.loads(stamp.read_text()) if stamp.is_file() else None
        if found != wanted:
            raise RecipeMismatch(f"{run_dir} holds a training run of another recipe ({stamp.name}: "
                             f"{found.get('recipe') if found else 'missing'}); give another --work folder")
        return str(last)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(wanted, indent=2))
    return None


def _train_one(recipe: Recipe, data: Path, work: Path, variant: str, threads: int, save: Path | None,
               data_meta: dict[str, Any] | None, command: str) -> dict[str, Any]:
    """Train and evaluate one variant (in this process or a worker of `--jobs`); saves it to `save` if given.
    Returns its results row."""
    from ..train.loop import TrainConfig, train

    torch.set_num_threads(threads)
    if not logging.getLogger().handlers:  # a spawned worker starts without the parent's logging setup
        logging.basicConfig(level=logging.INFO, format=f"%(levelname)s [{variant}] %(name)s: %(message)s")
    started = time.time()
    resume = resume_point(work / variant, recipe, variant)
    cfg = TrainConfig(train_data=str(data / "train"), val_data=str(data / "val"), out=str(work / variant),
                      preset=recipe.preset, model_overrides=config_overrides(recipe, variant),
                      epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                      warmup_epochs=recipe.warmup_epochs, scratch_init=recipe.scratch_init,
                      reverse_pairs=recipe.reverse_pairs, focus=tuple(recipe.focus),
                      focus_epochs=recipe.focus_epochs, seed=recipe.seed,
                      workers=1, device="cpu", resume=resume)
    log.info("training %s: %s%s", variant, cfg.model_overrides, f" (resuming {resume})" if resume else "")
    resume_epoch = load_checkpoint(resume)[1].extra["train_state"]["epoch"] if resume else None
    trained = train(cfg)
    model, meta = load_checkpoint(work / variant / "last.pt")
    scores = held_out_scores(model, data / "val", meta.labels, meta.preprocessing, recipe.batch_size)
    # the field also quotes several test-time views; two temporal clips (a 64 px frame is its own centre crop)
    views = held_out_scores(model, data / "val", meta.labels, meta.preprocessing, recipe.batch_size, clips=2)
    scores["multiview"] = {k: views[k] for k in ("views", "top1", "direction_accuracy", "pair_accuracy")}
    log.info("%s: top-1 %.3f (%.3f with 2 clips), direction %.3f, pair %.3f", variant, scores["top1"],
             views["top1"], scores["direction_accuracy"], scores["pair_accuracy"])
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        provenance = {"recipe": dataclasses.asdict(recipe), "variant": variant,
                      "held_out": {k: scores[k] for k in ("top1", "direction_accuracy", "pair_accuracy", "clips")},
                      "data": data_meta, "command": command}
        # fp16 storage: the shipped file is half the size; loading casts back to fp32
        save_checkpoint(save, model, meta.labels, meta.preprocessing, storage_dtype=torch.float16,
                        provenance=provenance)
    return {"config": cfg.model_overrides, "params": sum(p.numel() for p in model.parameters()),
            "train_seconds": round(time.time() - started, 1), "threads": threads,
            "resumed_at_epoch": resume_epoch,
            "history": trained.state["history"], **scores}


def run(recipe: Recipe, data: Path | None, work: Path, variants: list[str], threads: int,
        save: Path | None = None, save_variant: str = "causal", command: str = "",
        on_model: Callable[[dict[str, Any]], None] | None = None, jobs: int = 1) -> dict[str, Any]:
    """Generate (if needed), train and evaluate every variant; returns the results dict. `on_model` gets the
    results so far after each variant (a long run keeps what it finished if it is stopped).

    `jobs` > 1 trains that many variants at once, each in its own process with `threads // jobs` threads: the
    small matrices of a mobile model leave a second thread of one process partly idle, so side by side uses
    the cores better. The recipe, data, seeds and results are the same either way."""
    torch.set_num_threads(threads)
    generated = data is None
    if generated:
        data = work / "synthetic"
        settings = dict(classes=list(recipe.classes), train_per_class=recipe.train_per_class,
                        val_per_class=recipe.val_per_class, frames=recipe.source_frames, size=recipe.source_size,
                        seed=recipe.seed)
        meta_found = json.loads((data / "meta.json").read_text()) if (data / "meta.json").is_file() else {}
        wanted = {**settings, "version": VERSION}  # an older generator's clips differ for the same seed
        if all(meta_found.get(k) == v for k, v in wanted.items()):  # written whole: meta.json comes last
            log.info("reusing the benchmark already generated in %s", data)
        else:
            write_dataset(data, **settings)
    meta_file = data / "meta.json"
    jobs = max(1, min(jobs, len(variants)))
    results: dict[str, Any] = {"recipe": dataclasses.asdict(recipe), "data": "generated" if generated else data.name,
                               "data_meta": json.loads(meta_file.read_text()) if meta_file.is_file() else None,
                               "threads": threads, "jobs": jobs, "command": command, "models": {}}

    def finished(variant: str, row: dict[str, Any]) -> None:
        results["models"][variant] = row
        if save is not None and variant == save_variant:
            results["checkpoint"] = {"file": save.name, "variant": variant}  # where it went is this machine's
        if on_model is not None:
            on_model(results)

    args = lambda v: (recipe, data, work, v, max(1, threads // jobs), save if v == save_variant else None,  # noqa: E731
                      results["data_meta"], command)
    if jobs == 1:
        for variant in variants:
            finished(variant, _train_one(*args(variant)))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker, not a fork of this process's torch thread pools
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_one, *args(v)): v for v in variants}
            for future in as_completed(futures):
                finished(futures[future], future.result())
        results["models"] = {v: results["models"][v] for v in variants}  # the requested order
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    """Held-out top-1 / direction accuracy per model, and validation top-1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(models)
    width = 0.38
    top1_label = f"top-1 ({len(results['recipe']['classes'])} classes)"
    for k, (key, label) in enumerate((("top1", top1_label), ("direction_accuracy", "direction (pairs)"))):
        ax1.bar([i + (k - 0.5) * width for i in range(len(names))], [100 * models[n][key] for n in names],
                width, label=label)
    ax1.axhline(100 / max(1, len(next(iter(models.values()))["per_class_top1"])), color="grey", ls=":",
                label="chance (top-1)")
    ax1.axhline(50, color="black", ls="--", lw=0.8, label="chance (direction)")
    ax1.set_xticks(range(len(names)), names)
    ax1.set_ylabel("held-out accuracy (%)")
    ax1.legend(fontsize=8)
    for n in names:
        hist = models[n]["history"]
        ax2.plot([h["epoch"] for h in hist], [100 * h.get("val_top1", 0) for h in hist], marker=".", label=n)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation top-1 (%)")
    ax2.legend(fontsize=8)
    r = results["recipe"]
    fig.suptitle(f"synthetic temporal benchmark: {r['preset']} @ {r['img_size']} px, T={r['num_frames']}, "
                 f"{r['epochs']} epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvit_edge.bench.accuracy", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    d = Recipe()
    p.add_argument("--quick", action="store_true",
                   help="a tiny model on a tiny generated set for one epoch: checks the pipeline, not accuracy")
    p.add_argument("--data", type=Path, help="an existing synthetic benchmark folder (train/, val/, labels.txt); "
                   "default: generate one with the recipe's sizes")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for accuracy.json and accuracy.png")
    p.add_argument("--tag", default="", help="name the results accuracy_TAG.json / .png, so several runs (e.g. one "
                   "class pair and all classes) sit side by side; python -m xvit_edge.bench quotes them all")
    p.add_argument("--work", type=Path, help="folder for generated data and training runs (default: a temporary "
                   "one); run the same command with the same --work again to resume a stopped run")
    p.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="models to train")
    p.add_argument("--preset", default=d.preset, help="architecture shared by every model")
    p.add_argument("--img-size", type=int, default=d.img_size, help="input size the models are trained at")
    p.add_argument("--frames", type=int, default=d.num_frames, help="frames per clip (T)")
    p.add_argument("--classes", nargs="+", default=list(d.classes), choices=CLASSES, metavar="CLASS",
                   help="classes to generate (default: all 12); e.g. move_left move_right for one direction pair")
    p.add_argument("--train-per-class", type=int, default=d.train_per_class, help="generated training clips per class")
    p.add_argument("--val-per-class", type=int, default=d.val_per_class, help="generated held-out clips per class")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs per model")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per optimizer step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs,
                   help="linear learning-rate warm-up; keep it >= ~100 optimizer steps: a full learning rate from "
                   "the first step undoes the mimetic initialisation and the model stalls at chance")
    p.add_argument("--scratch-init", choices=SCRATCH_INITS, default=d.scratch_init,
                   help="initialisation of every model (see python -m xvit_edge.train --help); 'timm' shows the "
                   "plateau that 'mimetic' avoids")
    p.add_argument("--reverse-pairs", choices=["auto", "none"], default=d.reverse_pairs,
                   help="'auto': beside each clip its batch gets the clip reversed in time, labelled with its "
                   "partner class (python -m xvit_edge.train --help); 'none': plain batches")
    p.add_argument("--focus", nargs="+", default=list(d.focus), metavar="CLASS",
                   help="curriculum: classes every model trains on alone first, for --focus-epochs passes over "
                   "their clips (python -m xvit_edge.train --help); e.g. rotate_cw rotate_ccw, the pair the nano "
                   "model does not pick up among all 12 classes")
    p.add_argument("--focus-epochs", type=int, default=d.focus_epochs,
                   help="passes over the --focus classes' clips before the main epochs")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the data and of training")
    p.add_argument("--threads", type=thread_count, default=torch.get_num_threads(), help="torch threads for training, "
                   "shared by the --jobs processes")
    p.add_argument("--jobs", type=int, default=1, help="train this many models at once, each in its own process "
                   "with threads/jobs threads (small models leave a second thread of one process partly idle)")
    p.add_argument("--save-checkpoint", type=Path, metavar="PATH",
                   help="also save the trained --checkpoint-model here (xvit_edge checkpoint format)")
    p.add_argument("--checkpoint-model", default="causal", choices=list(VARIANTS),
                   help="which model --save-checkpoint keeps")
    p.add_argument("--quantize", metavar="MODEL", choices=list(VARIANTS),
                   help="also quantize this trained model to int8 both ways (PTQ, QAT) and compare with fp32 on the "
                   "held-out clips (xvit_edge.quantize.quantization_benchmark): writes quantization[_TAG].json")
    return p


def tag_error(tag: str) -> str | None:
    """Why `--tag` cannot name a result file, or None when it can."""
    if tag and not tag.replace("_", "").replace("-", "").isalnum():
        return f"--tag {tag!r}: use letters, digits, '-' and '_'"
    return None


def tagged(stem: str, tag: str) -> str:
    """The name of a result file: `stem`, or `stem_TAG` for a tagged run."""
    return f"{stem}_{tag}" if tag else stem


def _portable(argv: list[str]) -> list[str]:
    """The command line as recorded in results and checkpoints: the recipe flags, without the flags that only
    say where files go on this machine (--out, --work, --save-checkpoint), and `--data` with its folder's name
    only (what the folder holds is recorded from its meta.json)."""
    paths = ("--out", "--work", "--save-checkpoint")
    out, skip, name_only = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif name_only:
            out.append(Path(arg).name)
            name_only = False
        elif arg == "--data":
            out.append(arg)
            name_only = True
        elif arg.startswith("--data="):
            out.append("--data=" + Path(arg.partition("=")[2]).name)
        elif arg in paths:
            skip = True
        elif not arg.startswith(tuple(p + "=" for p in paths)):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        recipe = QUICK
    else:
        recipe = Recipe(preset=args.preset, img_size=args.img_size, num_frames=args.frames, classes=tuple(args.classes),
                        train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs,
                        scratch_init=args.scratch_init, reverse_pairs=args.reverse_pairs, focus=tuple(args.focus),
                        focus_epochs=args.focus_epochs, seed=args.seed)
    if bool(recipe.focus) != (recipe.focus_epochs > 0) or not set(recipe.focus) <= set(recipe.classes):
        print("error: --focus names classes among --classes, and --focus-epochs how many passes over them; "
              "give both or neither", file=sys.stderr)
        return 2
    if args.quantize and args.quantize not in args.models:
        print(f"error: --quantize {args.quantize} is not among --models", file=sys.stderr)
        return 2
    if args.save_checkpoint and args.checkpoint_model not in args.models:
        print(f"error: --checkpoint-model {args.checkpoint_model} is not among --models", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: need at least 1", file=sys.stderr)
        return 2
    if tag_error(args.tag):
        print(f"error: {tag_error(args.tag)}", file=sys.stderr)
        return 2
    if args.data is not None and not (args.data / "train").is_dir():
        print(f"error: {args.data} has no train/ folder; make one with python -m xvit_edge.data.synthetic",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        command = " ".join(["python -m xvit_edge.bench.accuracy", *_portable(argv if argv is not None else sys.argv[1:])])
        stem = tagged("accuracy", args.tag)

        def write_partial(partial: dict[str, Any]) -> None:
            done = list(partial["models"])
            partial = {**partial, "quick": args.quick, "models_planned": args.models,
                       "complete": len(done) == len(args.models)}
            (args.out / f"{stem}.json").write_text(json.dumps(partial, indent=2))
            plot(partial, args.out / f"{stem}.png")
            log.info("wrote %s (%s of %s trained)", args.out / f"{stem}.json", done, args.models)

        try:
            results = run(recipe, args.data, work, args.models, args.threads, args.save_checkpoint,
                          args.checkpoint_model, command, on_model=write_partial, jobs=args.jobs)
        except RecipeMismatch as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.quantize:
            from ..quantize import quantization_benchmark

            q_stem = tagged("quantization", args.tag)
            data = args.data or work / "synthetic"
            q = quantization_benchmark(work / args.quantize / "last.pt", data, args.out / f"{q_stem}.json",
                                       source=f", the {args.quantize} model of `{command}`")
            print(f"int8 ({args.quantize}): fp32 {100 * q['fp32']['top1']:.1f}%, PTQ {100 * q['ptq']['top1']:.1f}%, "
                  f"QAT {100 * q['qat']['top1']:.1f}%")
    results.update(quick=args.quick, models_planned=args.models, complete=True)
    results["elapsed_s"] = round(time.time() - started, 1)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / f"{stem}.png")
    for name, m in results["models"].items():
        print(f"{name:>10}: top-1 {100 * m['top1']:.1f}%  direction {100 * m['direction_accuracy']:.1f}%  "
              f"pair {100 * m['pair_accuracy']:.1f}%  ({m['clips']} held-out clips, {m['train_seconds']:.0f} s)")
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.png')} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
