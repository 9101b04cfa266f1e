"""Turn a benchmark's results CSV into its markdown table (and its plot, where it has one).

    python benchmarks/report.py benchmarks/results/gpu_hours_fashion_mnist.csv   # -> .md and .png
    python benchmarks/report.py benchmarks/results/precision_cpu.csv             # -> precision_cpu.md
    python benchmarks/report.py X.csv --kind kernels --no-plots

Every benchmark script writes its rows with ``common.write_csv`` (provenance on every row: device,
torch / triton / accelerate / deepspeed versions, Python, commit, precision, command, UTC time) and
then calls ``write_report`` on that CSV, so a committed CSV regenerates its markdown exactly. The
kind of CSV (which script wrote it) is read from its ``command`` column, else from the file name
(``gpu_hours*``, ``ablations*``, ``precision_cpu*``, ``profile_cpu*``, ``imagenet_throughput*``,
``kernels*``); anything else gets a plain table of its columns. Plots need matplotlib (the
``bench`` extra): ``pip install -e ".[bench]"``. The LTE figure of benchmarks/ablations.py is drawn
by that script: it comes from the text encoders, not from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path

from common import PROVENANCE_KEYS

__all__ = ["RENDERERS", "detect_kind", "main", "provenance_lines", "read_rows", "render", "write_report"]

CONV = "epochs_to_ce_below_"  # benchmarks/ablations.py: column prefix of the convergence epochs


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _blank(value) -> bool:
    return value is None or value == ""


def _fixed(value, digits: int) -> str:
    """A number with ``digits`` decimals; '-' when blank."""
    return "-" if _blank(value) else f"{float(value):.{digits}f}"


def _commit(value) -> str:
    """A commit shortened to 12 hex digits, keeping '+dirty'."""
    value = str(value or "")
    return value[:12] + ("+dirty" if value.endswith("+dirty") else "")


def _date(row: dict) -> str:
    return row.get("date") or (row.get("timestamp") or "")[:10]


def provenance_lines(rows: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    """One bullet per provenance column present in ``rows`` (except ``skip``), with its distinct
    values in row order (the first four, then how many there are)."""
    lines = []
    for key in (*PROVENANCE_KEYS, "date"):
        if key in skip:
            continue
        values = list(dict.fromkeys(str(r[key]) for r in rows if not _blank(r.get(key))))
        if not values:
            continue
        shown = [f"`{v}`" if key in ("command", "commit") else v for v in values[:4]]
        more = f" ({len(values)} values in all; see the CSV)" if len(values) > 4 else ""
        lines.append(f"- {key}: {'; '.join(shown)}{more}")
    return lines + [""] if lines else []


def _table(header: list[str], rows: list[list], align: list[str] | None = None) -> list[str]:
    """Markdown table lines; ``align``: one separator per column ("---", "---:"), default "---"."""
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(f"{a}|" for a in align or ["---"] * len(header))]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


# ------------------------------------------------------------------------------------------------
# benchmarks/gpu_hours.py
# ------------------------------------------------------------------------------------------------


def _gpu_hours_results(rows: list[dict]) -> list[tuple[str, int, list[dict]]]:
    """CSV rows -> [(method, budget epochs, typed rows)], as gpu_hours.analyse takes them."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        typed = {"method": r["method"], "budget_epochs": int(r["budget_epochs"]), "epoch": int(r["epoch"]),
                 "final": str(r["final"]) == "True", "top1": float(r["top1"]),
                 "device_hours": float(r["device_hours"]), "synthesis_device_hours": float(r["synthesis_device_hours"]),
                 "unit": r["unit"], "device_kind": r["device_kind"], "num_devices": int(r["num_devices"])}
        runs.setdefault((typed["method"], typed["budget_epochs"]), []).append(typed)
    return [(m, e, rs) for (m, e), rs in runs.items()]


def render_gpu_hours(rows: list[dict], name: str) -> str:
    """Table-2-shaped table (top-1, device-hours, synthesis-only hours, speed-up vs DeepInversion) and
    the headline sentences of ``gpu_hours.analyse``."""
    from gpu_hours import LABELS, analyse

    results = _gpu_hours_results(rows)
    table, sentences = analyse(results)
    last = results[-1][2][-1]
    unit, setting = last["unit"], rows[0].get("setting") or name.removeprefix("gpu_hours_")
    if "teacher_top1" not in rows[-1]:
        teacher = "Teacher top-1: not recorded in this CSV."
    elif _blank(rows[-1]["teacher_top1"]):
        teacher = "No evaluation set."
    else:
        teacher = f"Teacher top-1: {100 * float(rows[-1]['teacher_top1']):.2f}%."
    lines = []
    for r in table:
        speed = f"{r['speedup_vs_di']:.2f}x" if r["speedup_vs_di"] is not None else "n/a"
        lines.append([LABELS[r["method"]], r["budget_epochs"], f"{100 * r['top1']:.2f}", f"{r['device_hours']:.4f}",
                      f"{r['synthesis_device_hours']:.4f}", speed])
    md = [f"# Top-1 against {unit}: {setting}", "", *provenance_lines(rows),
          f"Runs on {last['device_kind']} x {last['num_devices']} process(es); {unit} = wall-clock x processes.", "",
          teacher, "",
          *_table(["Method", "Epochs", "Student top-1 (%)", unit, f"Synthesis-only {unit}",
                   "Speed-up vs DeepInversion"], lines),
          "", *[f"- {s}" for s in sentences], "",
          f"Time-to-accuracy points: `{name}.csv`; plot: `{name}.png`.", ""]
    return "\n".join(md)


def plot_gpu_hours(rows: list[dict], path: Path) -> None:
    """Figure-1-style plot: student top-1 against device-hours (log x), one curve per run, its final
    result as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from gpu_hours import LABELS

    results = _gpu_hours_results(rows)
    unit, setting = results[-1][2][-1]["unit"], rows[0].get("setting") or path.stem.removeprefix("gpu_hours_")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"nayer": "tab:red", "deepinversion": "tab:blue", "fast": "tab:green"}
    for m, e, rs in results:
        curve = [r for r in rs if not r["final"]]
        ax.plot([r["device_hours"] for r in curve], [100 * r["top1"] for r in curve], marker=".",
                color=colors[m], alpha=0.35 + 0.65 * (e == max(ep for mm, ep, _ in results if mm == m)),
                label=f"{LABELS[m]} ({e} epochs)")
        final = rs[-1]
        ax.scatter([final["device_hours"]], [100 * final["top1"]], s=60, color=colors[m], edgecolor="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel(unit + " (log scale)")
    ax.set_ylabel("student top-1 (%)")
    ax.set_title(f"Data-free KD on {setting}: accuracy against time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# benchmarks/ablations.py
# ------------------------------------------------------------------------------------------------


def _ablation_table(rows: list[dict], thresholds: list[str]) -> list[str]:
    head = ["Variant", *(f"Epochs to CE < {float(t):g}" for t in thresholds), "Min synthesis CE", "Diversity",
            "Student top-1 (%)"]
    body = [[r["label"], *("never" if _blank(r[CONV + t]) else str(r[CONV + t]) for t in thresholds),
             _fixed(r["min_synth_ce"], 3), _fixed(r["diversity"], 4), f"{100 * float(r['student_top1']):.2f}"]
            for r in rows]
    return _table(head, body) + [""]


def render_ablations(rows: list[dict], name: str) -> str:
    """Table-4-shaped table (generator input and noisy-layer variants), Table-6/7-shaped table
    (prompt templates and text encoders, with NAYER itself first) and the LTE nearest classes."""
    from ablations import DEFAULT, VARIANTS

    by_name = {r["variant"]: r for r in rows}
    order = [n for n in VARIANTS if n in by_name] + [n for n in by_name if n not in VARIANTS]
    thresholds = [c.removeprefix(CONV) for c in rows[0] if c.startswith(CONV)]
    t4 = [by_name[n] for n in order if by_name[n]["table"] == "table4"]
    t67 = [by_name[n] for n in order if by_name[n]["table"] == "table67"]
    t67 = ([by_name[DEFAULT]] if DEFAULT in by_name else []) + t67
    setting = rows[0].get("setting") or name.removeprefix("ablations_")
    epochs = f" ({rows[0]['epochs']} epochs each)" if not _blank(rows[0].get("epochs")) else ""
    teacher = rows[0].get("teacher_top1")
    md = [f"# NAYER ablations on {setting}{epochs}", "", *provenance_lines(rows),
          f"Teacher top-1 {100 * float(teacher):.2f}%." if not _blank(teacher) else "No evaluation set.", "",
          "Epochs count from 0 and include the warm-up; \"never\" = not within the run. Diversity: mean "
          "within-class pairwise cosine distance of teacher penultimate features within a synthesis batch, "
          "averaged over the last epoch's batches (`nayer_scale.metrics.feature_diversity`).", ""]
    if t4:
        md += ["## Generator input and noisy layer (paper Table 4)", "", *_ablation_table(t4, thresholds)]
    if len(t67) > 1:
        md += ["## Prompt templates and text encoders (paper Tables 6 and 7)", "", *_ablation_table(t67, thresholds),
               "The CLIP text encoder (`lte.encoder=clip:<folder>`) is not in this table: this machine has no "
               "CLIP weights and no hub access.", ""]
    neighbours = by_name.get(DEFAULT, {}).get("lte_neighbours")
    if not _blank(neighbours):
        md += ["## Nearest classes in the default LTE pool (MiniLM, \"a photo of a {name}\")", "",
               *_table(["Class", "Nearest classes (cosine similarity)"],
                       [[c, ", ".join(f"{n} ({s:.2f})" for n, s in nn)] for c, nn in json.loads(neighbours).items()]),
               ""]
    md.append(f"Per-variant numbers: `{name}.csv`; LTE pools: `{name}_lte.png`.")
    return "\n".join(md) + "\n"


# ------------------------------------------------------------------------------------------------
# benchmarks/precision_cpu.py, profile_cpu.py, imagenet_throughput.py, bench_kernels.py
# ------------------------------------------------------------------------------------------------


def render_precision_cpu(rows: list[dict], name: str) -> str:
    """Seconds per teacher / generator / student step per condition, one row per measurement."""
    shown = ("device", "torch", "commit", "timestamp", "date", "precision")
    lines = ["# Precision and memory format on CPU (Fashion-MNIST demo shapes)", "",
             "Seconds per step, medians (random weights): ResNet-20 teacher SGD step at batch 256; one NAYER generator "
             "step of the `fashion_mnist` preset (batch 200); one student step (ResNet-8, batch 256). `+cl` = "
             "channels_last.", "", *provenance_lines(rows, skip=shown),
             *_table(["condition", "teacher step s", "generator step s", "student step s", "threads", "device",
                      "torch", "commit", "date"],
                     [[r["condition"], r["teacher_step_s"], r["generator_step_s"], r["student_step_s"], r["threads"],
                       r["device"], r["torch"], _commit(r["commit"]), _date(r)] for r in rows])]
    return "\n".join(lines) + "\n"


def render_profile_cpu(rows: list[dict], name: str) -> str:
    """Each profiled phase's wall time per step and its groups' shares of the profiled CPU time."""
    phases: dict[tuple, list[dict]] = {}
    for r in rows:
        phases.setdefault((r["phase"], r["batch"], r["ms_per_step"]), []).append(r)
    lines = ["# Where the Fashion-MNIST demo's time goes on CPU", "", *provenance_lines(rows),
             "Share of the profiled CPU time (self time of aten operators) per group, one NAYER generator step of the "
             "`fashion_mnist` preset and one student step (teacher forward + KD + SGD), random-weight teacher.", ""]
    for (phase, batch, ms), group_rows in phases.items():
        ranked = sorted(group_rows, key=lambda r: -float(r["share"]))
        lines += [f"## {phase} (batch {batch}): {float(ms):.0f} ms per step (unprofiled)", "",
                  *_table(["group", "share"], [[r["group"], f"{float(r['share']) * 100:.1f}%"] for r in ranked]), ""]
    return "\n".join(lines)


def render_imagenet_throughput(rows: list[dict], name: str) -> str:
    """Images/s, peak memory and the projected hours of the full imagenet_r50 preset per condition."""
    shown = ("device", "torch", "commit", "timestamp", "date", "precision")
    lines = ["# ImageNet throughput per process (imagenet_r50 preset)", "",
             "Random-weight ResNet-50 teacher; sizes per process. Projection: the full preset (320 epochs, 20 warm-up) "
             "on one process = hours per process = single-node wall-clock with any number of GPUs (each does the same "
             "work); GPU-hours on 8 GPUs = 8 x that. Memory-bank I/O, evaluation and checkpoints are not in the "
             "projection.", "", *provenance_lines(rows, skip=shown),
             *_table(["condition", "student", "synth img/s", "gen-step img/s", "student img/s", "synth peak GB",
                      "student peak GB", "h per process (= 1-node wall)", "GPU-h on 8 GPUs", "device", "torch",
                      "commit"],
                     [[r["condition"], r["student"], r["synthesis_images_per_s"], r["generator_step_images_per_s"],
                       r["student_images_per_s"], r["synthesis_peak_gb"], r["student_peak_gb"],
                       r["projected_hours_per_process"], r["projected_gpu_hours_8"], r["device"], r["torch"],
                       _commit(r["commit"])] for r in rows])]
    return "\n".join(lines) + "\n"


def _copy_bandwidth(rows: list[dict]) -> str:
    for r in rows:
        if not _blank(r.get("copy_bw_gbps")):
            return f"{float(r['copy_bw_gbps']):.0f} GB/s"
    for r in rows:  # CSVs without the column: GB/s / share of the copy bandwidth (rounded to 0.1%)
        if not _blank(r.get("pct_of_copy_bw")) and float(r["pct_of_copy_bw"]) > 0:
            return f"about {100 * float(r['gbps']) / float(r['pct_of_copy_bw']):.0f} GB/s"
    return "n/a (CPU)"


def render_kernels(rows: list[dict], name: str) -> str:
    """Per run (commit, device, time): median ms, speed-up vs the eager torch provider (same op, mode
    and shape), GB/s, % of the copy bandwidth and peak memory of each case."""
    runs: dict[tuple, list[dict]] = {}
    for r in rows:
        runs.setdefault((r.get("commit"), r.get("device"), r.get("timestamp") or r.get("command")), []).append(r)
    lines = ["# Kernel benchmarks", "",
             "Speedup = eager torch median / this provider's median (same op, mode and shape). GB/s from the",
             "minimum traffic (see benchmarks/bench_kernels.py); % of copy BW relative to the copy bandwidth",
             "below.", ""]
    for i, run in enumerate(runs.values()):
        eager = {(r["op"], r["mode"], r["shape"]): float(r["median_ms"]) for r in run if r["provider"] == "torch"}
        body = []
        for r in run:
            base = eager.get((r["op"], r["mode"], r["shape"]))
            body.append([r["op"], r["provider"], r["mode"], r["shape"], _fixed(r["median_ms"], 3),
                         _fixed(base / float(r["median_ms"]) if base else None, 2), _fixed(r["gbps"], 1),
                         _fixed(r["pct_of_copy_bw"], 1), _fixed(r["peak_mem_mb"], 1)])
        lines += [f"## Run {i + 1}", ""] if len(runs) > 1 else []
        lines += [*provenance_lines(run)[:-1], f"- copy bandwidth (1 GiB copy): {_copy_bandwidth(run)}", "",
                  *_table(["op", "provider", "mode", "shape", "median ms", "speedup vs torch", "GB/s", "% of copy BW",
                           "peak MB"], body, ["---"] * 4 + ["---:"] * 5), ""]
    return "\n".join(lines)


def render_generic(rows: list[dict], name: str) -> str:
    """A plain table of every column."""
    columns = list(rows[0]) if rows else []
    return "\n".join([f"# {name}", "", *_table(columns, [[r.get(c, "") for c in columns] for r in rows])]) + "\n"


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------

def render_quantization(rows: list[dict], name: str) -> str:
    """benchmarks/quantization.py: the data-free quantization table (paper Table 3 shape)."""
    from quantization import render_table

    return render_table(rows, name)


def render_memory_cap(rows: list[dict], name: str) -> str:
    """benchmarks/memory_cap.py: student top-1 against the memory cap (paper Table 5 shape)."""
    from memory_cap import render_table

    return render_table(rows, name)


def plot_memory_cap(rows: list[dict], path: Path) -> None:
    """benchmarks/memory_cap.py: top-1 against the cap, FIFO and reservoir."""
    from memory_cap import plot

    plot(rows, path)


RENDERERS: dict[str, Callable[[list[dict], str], str]] = {
    "quantization": render_quantization, "memory_cap": render_memory_cap,
    "gpu_hours": render_gpu_hours, "ablations": render_ablations, "precision_cpu": render_precision_cpu,
    "profile_cpu": render_profile_cpu, "imagenet_throughput": render_imagenet_throughput, "kernels": render_kernels,
    "generic": render_generic,
}
PLOTTERS: dict[str, Callable[[list[dict], Path], None]] = {"gpu_hours": plot_gpu_hours, "memory_cap": plot_memory_cap}
SCRIPT_KIND = {"bench_kernels": "kernels"}  # script name -> kind, where they differ


def detect_kind(path: str | os.PathLike, rows: list[dict]) -> str:
    """The kind of a results CSV: the script in its ``command`` column, else the file name's prefix,
    else "generic"."""
    try:
        words = shlex.split(rows[0].get("command") or "") if rows else []
    except ValueError:
        words = []
    if len(words) > 1:
        stem = Path(words[1]).stem
        if SCRIPT_KIND.get(stem, stem) in RENDERERS:
            return SCRIPT_KIND.get(stem, stem)
    stem = Path(path).stem
    return next((kind for kind in RENDERERS if stem.startswith(kind)), "generic")


def render(csv_path: str | os.PathLike, kind: str | None = None) -> str:
    """The markdown of ``csv_path`` (``kind``: one of RENDERERS, default ``detect_kind``)."""
    rows = read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    return RENDERERS[kind or detect_kind(csv_path, rows)](rows, Path(csv_path).stem)


def write_report(csv_path: str | os.PathLike, kind: str | None = None, plots: bool = True) -> Path:
    """Write ``X.md`` next to ``X.csv`` (and ``X.png`` where the kind has a plot and matplotlib is
    installed; without it a note is printed). Returns the markdown's path."""
    csv_path = Path(csv_path)
    rows = read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    kind = kind or detect_kind(csv_path, rows)
    md_path = csv_path.with_suffix(".md")
    md_path.write_text(RENDERERS[kind](rows, csv_path.stem))
    if plots and kind in PLOTTERS:
        try:
            PLOTTERS[kind](rows, csv_path.with_suffix(".png"))
        except ImportError as err:
            print(f"report: no plot for {csv_path.name} ({err}): pip install -e \".[bench]\"")
    return md_path


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/report.py CSV [CSV ...] [--kind KIND] [--no-plots]``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+", type=Path, help="results CSV(s); X.csv -> X.md (and X.png)")
    p.add_argument("--kind", choices=sorted(RENDERERS), help="which script's table (default: detected)")
    p.add_argument("--no-plots", action="store_true", help="markdown only")
    args = p.parse_args(argv)
    for path in args.csv:
        print(f"wrote {write_report(path, args.kind, plots=not args.no_plots)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
