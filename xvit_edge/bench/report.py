"""The markdown results table, and its place in the README between two markers."""

from __future__ import annotations

from pathlib import Path

from ..files import printable, write_text_atomic

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def markdown(results: dict) -> str:
    s = results["settings"]
    c = results["complexity"]
    lines = [f"Measured by `python -m xvit_edge.bench{' --quick' if s['quick'] else ''}` "
             f"(torch {results['machine']['torch']}, {s['warmup']} warm-up + {s['repeats']} timed runs, median).", ""]
    lines += ["**Machine peak** (fp32 `torch.mm` 1024x1024):",
              ", ".join(f"{t} thread{'s' if t != '1' else ''}: {p['gflops']:.1f} GFLOP/s"
                        for t, p in results["peak"].items()), ""]
    img = c["image_model"]
    lines += [f"**Complexity vs frames**, `{c['preset']}`, batch 1, {c['threads']} threads. "
              f"Image model (one frame): {img['gmacs']:.3f} GMACs, {img['median_ms']:.1f} ms.", "",
              "| attention | T | params (M) | GMACs | GMACs / (T x image) | latency (ms) | p90 (ms) "
              "| latency / (T x image) | GFLOP/s | of peak |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in c["rows"]:
        lines.append(f"| {r['attention']} | {r['frames']} | {r['params'] / 1e6:.2f} | {r['gmacs']:.2f} "
                     f"| {r['macs_over_T_x_image']:.3f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} "
                     f"| {r['latency_over_T_x_image']:.2f} | {r['gflops_achieved']:.1f} "
                     f"| {100 * r['fraction_of_peak']:.0f}% |")
    if results.get("deployment"):
        lines += deployment_lines(results["deployment"])
    if results.get("deployment_default"):
        lines += deployment_lines(results["deployment_default"])
    lines += accuracy_lines(results.get("accuracy"), results.get("quantization"))
    if results.get("streaming"):
        from .streaming import markdown as streaming_markdown

        lines += [""] + streaming_markdown(results["streaming"])
    if results.get("web"):
        from .web import table as web_table

        lines += ["", "**In the browser** (`apps/web`, the streaming step in onnxruntime-web):", "",
                  web_table(results["web"])]
    return "\n".join(lines) + "\n"


def deployment_lines(d: dict) -> list[str]:
    """The deployment table of one model: every form's size, latency and parity, then Core ML's size and ops."""
    if d.get("checkpoint"):
        int8 = (f"int8: the shipped `{d['int8_checkpoint']}`" if d.get("int8_checkpoint")
                else "int8 calibrated on synthetic clips, for size and latency")
        what = (f"the default checkpoint `{d['checkpoint']}` (`{d['preset']}`, what `python -m xvit_edge.export` "
                f"exports when given no checkpoint; {int8})")
    else:
        bar = d.get("int8_min_sqnr_db")
        what = f"`{d['preset']}`, random weights (latency does not depend on them" + (
            f"; int8 timed against a {bar:g} dB parity bar: random weights quantize poorly)" if bar else ")")
    step = f"; step: {d['step_model']}" if d.get("step_model") else ""
    lines = ["", f"**Deployment**, {what}, input {tuple(d['input_shape'])}{step}; each runtime timed in a fresh "
             "process.", "",
             "| form | mode | threads | size (MB) | latency (ms) | p90 (ms) | XNNPACK partitions | parity (fp32: vs "
             "eager; int8: SQNR vs the converted int8 model) |", "|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        diff = ("-" if r["parity_max_abs_diff"] is None else f"{r['parity_max_abs_diff']:.1e}") \
            if r.get("parity_sqnr_db") is None else f"{r['parity_sqnr_db']:.1f} dB"
        parts = "-" if r.get("partitions") is None else r["partitions"]
        lines.append(f"| {r['form']} | {r.get('mode', 'clip')} | {r['threads']} | {r['size_mb']:.2f} "
                     f"| {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {parts} | {diff} |")
    for f in d.get("failed", []):
        lines.append(f"| {f['form']} | {f.get('mode', 'clip')} | | | | | | refused by the export's parity check: "
                     f"{f['error']} |")
    if d.get("speedups"):
        lines += ["", "int8 speed-up over fp32 (fp32 median / int8 median, same runtime, mode and threads, one "
                  "process): " + "; ".join(f"{s['runtime']}{' ' + s['scheme'] if s.get('scheme', 'static') != 'static' else ''} "
                                           f"{s['mode']} {s['threads']}t {s['int8_speedup']:.2f}x"
                                           for s in d["speedups"])]
    c = d["coreml"]
    if "op_counts" not in c:
        return lines
    top = sorted(c["op_counts"].items(), key=lambda kv: -kv[1])[:8]
    parity = "; ".join(f"{p} {v['max_abs_diff']:.1e} max abs diff, {v['sqnr_db']:.1f} dB, top-1 agreement "
                       f"{100 * v['top1_agreement']:.0f}%" for p, v in c.get("parity", {}).items())
    return lines + ["", f"Core ML fp16 `.mlpackage`: {c['size_mb']:.2f} MB, weights {c['weight_dtypes']}, ops "
                    + ", ".join(f"{k} {v}" for k, v in top)
                    + (f". Parity (the saved ML Program evaluated in numpy; fp16/fp32 against eager, int8 "
                       f"{c.get('int8_scheme', 'weight-only')}): {parity}" if parity else "")
                    + f"; latency {c['apple_runtime'].replace('not run: ', 'not measured: ')}."]


def resumed(model: dict) -> str:
    """A note for a model whose run was stopped and resumed: its training time covers the last part only."""
    epoch = model.get("resumed_at_epoch")
    return f" (from epoch {epoch + 1} on: resumed)" if epoch else ""


def accuracy_lines(runs: list[dict] | None, quantization: list[dict] | None = None) -> list[str]:
    """The accuracy tables, one per result file of `python -m xvit_edge.bench.accuracy` (training is too long
    to repeat inside every benchmark run, so each file's own command and recipe are quoted with it), then the
    int8 comparison of `xvit_edge.quantize.quantization_benchmark` when there is one."""
    if not runs:
        return ["", "**Accuracy**: no `accuracy.json` yet; run `python -m xvit_edge.bench.accuracy`."]
    lines: list[str] = []
    for acc in runs:
        r = acc["recipe"]
        data = acc.get("data_meta") or {}
        classes = r.get("classes") or data.get("classes") or []
        kind = (f"{len(classes)} classes in {len(classes) // 2} time-reversed pairs" if len(classes) > 2
                else f"one time-reversed pair: {' vs '.join(classes)}")
        clips = f"{data.get('train_per_class', '?')} + {data.get('val_per_class', '?')} clips per class"
        threads = (f"{acc['jobs']} models at a time, {acc['threads'] // acc['jobs']} thread(s) each"
                   if acc.get("jobs", 1) > 1 else f"{acc['threads']} threads")
        lr = f"lr {r['lr']:g}, " if "lr" in r else ""
        # results written before the pairs existed have no reverse_pairs: their batches were plain
        batches = ("each clip beside its time reversal in the batch" if r.get("reverse_pairs", "none") != "none"
                   else "plain batches")
        views = all("multiview" in m for m in acc["models"].values())  # older files scored one view only
        if r.get("focus"):
            batches += f", first {r['focus_epochs']} passes over {' and '.join(r['focus'])} alone"
        lines += ["", f"**Accuracy on the synthetic temporal benchmark**, {kind} ({clips}): `{r['preset']}` at "
                  f"{r['img_size']} px, T={r['num_frames']}, {r['epochs']} epochs from scratch "
                  f"({r.get('scratch_init', 'timm')} init), {lr}{batches}, {threads}"
                  f"{' (--quick: a pipeline check, not an accuracy figure)' if acc.get('quick') else ''}. "
                  f"`{acc.get('command', 'python -m xvit_edge.bench.accuracy')}`. Direction: the true class "
                  "scores above its time-reversed partner (50% = blind to order). Top-1: one centre view per held-out "
                  "video" + ("; 2 clips: two temporal views, softmax scores averaged." if views else "."), "",
                  "| model | params (M) | top-1 | " + ("top-1, 2 clips | " if views else "")
                  + "direction | pair | held-out clips | training (s) |", "|---" * (8 if views else 7) + "|"]
        for name, m in acc["models"].items():
            two = f"{100 * m['multiview']['top1']:.1f}% | " if views else ""
            lines.append(f"| {name} | {m['params'] / 1e6:.2f} | {100 * m['top1']:.1f}% | {two}"
                         f"{100 * m['direction_accuracy']:.1f}% | {100 * m['pair_accuracy']:.1f}% | {m['clips']} | "
                         f"{m['train_seconds']:.0f}{resumed(m)} |")
        missing = [n for n in acc.get("models_planned", []) if n not in acc["models"]]
        if missing:
            lines += ["", f"This run was stopped before it trained {', '.join(missing)}."]
    for q in quantization or []:
        lines += ["", f"**int8** (`xvit_edge.quantize.quantization_benchmark`: PTQ on "
                  f"{q['options']['calib_batches']} calibration batches, QAT {q['options']['epochs']} epoch at lr "
                  f"{q['options']['lr']:g}, seed {q['options'].get('seed', 0)} for shuffling and augmentation) "
                  f"of a trained `{q['model']}` ({q['classes']} classes{q.get('source', '')}); "
                  "held-out top-1, and the SQNR and top-1 agreement of the int8 logits against fp32 on the same "
                  "clips:", "",
                  "| model | top-1 | change vs fp32 | SQNR (dB) | top-1 agreement |", "|---|---|---|---|---|",
                  f"| fp32 | {100 * q['fp32']['top1']:.1f}% | | | |"]
        rows = {"ptq": "PTQ int8", "qat": "QAT int8", "ptq_adds_int8": "PTQ int8, adds in int8 too (ablation)",
                "ptq_cats_int8": "PTQ int8, cats in int8 too (ablation)"}
        for mode, title in rows.items():
            if mode not in q:  # results written before the ablation existed
                continue
            m = q[mode]
            lines.append(f"| {title} | {100 * m['top1']:.1f}% | "
                         f"{100 * (m['top1'] - q['fp32']['top1']):+.1f} points | {m['sqnr_db']:.1f} | "
                         f"{100 * m['top1_agreement']:.1f}% |")
    return lines


def check_readme(readme: Path) -> str:
    """`readme`'s text; a ValueError unless it is a readable file with the bench markers, in order (checked before
    a run, so that a half-hour measurement does not end on a README it cannot update)."""
    if not readme.is_file():
        raise ValueError(f"{printable(readme)}: no such file; name the README whose results block to update")
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text.split(START, 1)[1]:
        raise ValueError(f"{printable(readme)}: no '{START}' ... '{END}' block to update; add the two markers "
                         "where the results should go")
    return text


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the bench markers of `readme` with `table` (the file replaced only when
    complete)."""
    head, rest = check_readme(readme).split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(readme, f"{head}{START}\n{table}{END}{tail}")
