"""Accuracy against GPU-hours: NAYER vs DeepInversion vs Fast on one teacher (NAYER Table 2, Fig. 1).

Runs a list of (method, budget in epochs) for one setting through the same entry point users run
(``accelerate launch launch/distill.py preset=<setting>[_<method>] run.epochs=<budget>``), then reads
every run's ``summary.json`` and time-to-accuracy points (``metrics.jsonl``) and writes:

    <out>.csv   one row per evaluation (time-to-accuracy curve) and per final result
    <out>.md    a Table-2-shaped table (top-1, device-hours, synthesis-only hours, speed-up vs
                DeepInversion), NAYER's speed-up to reach DeepInversion's final accuracy, and the
                accuracy gap to Fast at (about) equal time; with the command, commit and device
    <out>.png   Figure-1-style plot: student top-1 against device-hours (log x)

    # Fashion-MNIST on this CPU machine (the committed results/gpu_hours_fashion_mnist.*):
    python -m benchmarks.gpu_hours --setting fashion_mnist \\
        --runs nayer:10 nayer:20 fast:60 deepinversion:60 --out benchmarks/results/gpu_hours_fashion_mnist
    # CIFAR-10 on a GPU, with a teacher and the CIFAR test split at hand:
    python -m benchmarks.gpu_hours --setting cifar10 --runs nayer:120 fast:120 deepinversion:200 \\
        --set teacher.weights=/ckpt/wrn40_2.pth --set eval.dataset=cifar10 --set eval.root=/data/cifar

Hours are device-hours: wall-clock x number of processes (GPU-hours on GPUs; CPU-hours on CPU, where
a "device" is one process with its share of the machine's cores; the table says which). They count
the whole run (set-up, synthesis, distillation, evaluation, checkpoints), as the paper's Table 2
does; synthesis-only hours are reported separately because Fast-Datafree's tables count only those.
Runs live in ``--work-dir`` and are resumed or reused when the script is run again (delete the
folder to measure afresh).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.lib.provenance import ROOT, add_common_args, command_line, precision_label, write_csv
from benchmarks.lib.report import blank, provenance_lines, register, table, write_report

METHODS = ("nayer", "deepinversion", "fast")
LABELS = {"nayer": "NAYER", "deepinversion": "DeepInversion", "fast": "Fast"}


def parse_runs(items: list[str]) -> list[tuple[str, int]]:
    """["nayer:20", "fast:60"] -> [("nayer", 20), ("fast", 60)]; raises SystemExit on bad items."""
    runs = []
    for item in items:
        method, _, epochs = item.partition(":")
        if method not in METHODS or not epochs.isdigit() or int(epochs) < 1:
            raise SystemExit(f"--runs item {item!r} is not <method>:<epochs> with method in {METHODS}")
        runs.append((method, int(epochs)))
    return runs


def run_command(
    setting: str, method: str, epochs: int, run_dir: Path, processes: int, launcher: str, overrides: list[str]
) -> list[str]:
    """The command line of one run (the user-facing entry point, resumable)."""
    preset = setting if method == "nayer" else f"{setting}_{method}"
    if launcher == "accelerate":
        cmd = [
            "accelerate",
            "launch",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ]
        if processes > 1:
            cmd.append("--multi_gpu")
    else:
        if processes != 1:
            raise SystemExit("--launcher python runs one process; use --launcher accelerate for more")
        cmd = [sys.executable]
    return cmd + [
        str(ROOT / "launch" / "distill.py"),
        f"preset={preset}",
        f"run.epochs={epochs}",
        f"run.run_dir={run_dir}",
        "run.resume=true",
        "run.progress=false",
        *overrides,
    ]


def check_setting(setting: str, runs: list[tuple[str, int]], overrides: list[str]) -> None:
    """Fail before any run when a preset is unknown, an override is invalid, or there is no
    evaluation set (accuracy-against-hours needs one)."""
    from nayer_scale.config import ConfigError, apply_overrides
    from nayer_scale.recipes import get_preset

    for method, _ in runs:
        try:
            cfg = apply_overrides(
                get_preset(setting if method == "nayer" else f"{setting}_{method}"), list(overrides)
            ).validate()
        except ConfigError as err:
            raise SystemExit(f"--setting {setting} / {method}: {err}") from err
        if cfg.eval.dataset == "none":
            raise SystemExit(
                f"--setting {setting} has no evaluation set: pass --set eval.dataset=<name> "
                "--set eval.root=<folder> (top-1 against hours needs one)"
            )


def read_run(run_dir: Path, method: str, epochs: int) -> tuple[dict, list[dict]]:
    """(summary, rows): the run's summary.json and one CSV row per evaluation plus a final row."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("student_top1") is None:
            continue
        rows.append(
            {
                "method": method,
                "budget_epochs": epochs,
                "epoch": r["epoch"],
                "final": False,
                "top1": r["student_top1"],
                "device_hours": r["device_hours"],
                "synthesis_device_hours": r["synthesis_s"] * r["num_devices"] / 3600.0,
                "unit": r["device_hours_unit"],
                "device_kind": r["device_kind"],
                "num_devices": r["num_devices"],
            }
        )
    rows.append(
        {
            "method": method,
            "budget_epochs": epochs,
            "epoch": epochs - 1,
            "final": True,
            "top1": summary["student_top1"],
            "device_hours": summary["device_hours"],
            "synthesis_device_hours": summary["synthesis_device_hours"],
            "unit": summary["device_hours_unit"],
            "device_kind": summary["device_kind"],
            "num_devices": summary["num_processes"],
        }
    )
    return summary, rows


def first_time_reaching(rows: list[dict], target: float) -> float | None:
    """Device-hours of the first evaluation with top-1 >= target, or None."""
    times = [r["device_hours"] for r in rows if not r["final"] and r["top1"] >= target]
    return min(times) if times else None


def analyse(results: list[tuple[str, int, list[dict]]]) -> tuple[list[dict], list[str]]:
    """Table rows (one per run) and the headline sentences.

    Speed-up vs DeepInversion = DeepInversion's total hours / the run's total hours (paper, Table 2),
    against the DeepInversion run with the largest budget. Speed-up to equal accuracy = the hours
    DeepInversion needed to first reach its final top-1 / the hours the NAYER run needed to first
    reach it. Equal-time gap = NAYER top-1 - Fast top-1 for the pair of runs closest in total hours.
    """
    finals = {(m, e): next(r for r in rows if r["final"]) for m, e, rows in results}
    curves = {(m, e): rows for m, e, rows in results}
    di = [(m, e) for m, e, _ in results if m == "deepinversion"]
    di_key = max(di, key=lambda k: k[1]) if di else None
    per_run = []
    for m, e, _ in results:
        f = finals[(m, e)]
        speedup = finals[di_key]["device_hours"] / f["device_hours"] if di_key else None
        per_run.append({**f, "speedup_vs_di": speedup})
    lines = []
    unit = results[0][2][-1]["unit"] if results else "hours"
    if di_key:
        target = finals[di_key]["top1"]
        t_di = first_time_reaching(curves[di_key], target) or finals[di_key]["device_hours"]
        lines.append(
            f"DeepInversion ({di_key[1]} epochs) ends at {100 * target:.2f}% top-1, first reached after "
            f"{t_di:.3f} {unit}."
        )
        for m, e, rows in results:
            if m != "nayer":
                continue
            t = first_time_reaching(rows, target)
            if t is None:
                lines.append(
                    f"NAYER ({e} epochs) never reaches DeepInversion's final {100 * target:.2f}% "
                    f"(it ends at {100 * finals[(m, e)]['top1']:.2f}%)."
                )
            else:
                lines.append(
                    f"NAYER ({e} epochs) first reaches {100 * target:.2f}% after {t:.3f} {unit}: "
                    f"**{t_di / t:.1f}x** faster than DeepInversion to equal accuracy."
                )
    nayer_runs = [(m, e) for m, e, _ in results if m == "nayer"]
    for m, e, _ in results:
        if m != "fast" or not nayer_runs:
            continue
        fast = finals[(m, e)]
        nk = min(nayer_runs, key=lambda k: abs(finals[k]["device_hours"] - fast["device_hours"]))
        nayer = finals[nk]
        gap = 100 * (nayer["top1"] - fast["top1"])
        lines.append(
            f"At about equal time, NAYER ({nk[1]} epochs, {nayer['device_hours']:.3f} {unit}) reaches "
            f"{100 * nayer['top1']:.2f}% and Fast ({e} epochs, {fast['device_hours']:.3f} {unit}) "
            f"{100 * fast['top1']:.2f}%: NAYER is **{gap:+.2f} points** "
            f"{'more' if gap >= 0 else 'less'} accurate."
        )
    return per_run, lines


def write_outputs(out: Path, setting: str, results: list[tuple[str, int, list[dict]]], command: str) -> None:
    """``out``.csv (every row with its setting and the provenance columns), then ``out``.md and
    ``out``.png from it (benchmarks.lib.report)."""
    rows = [{**r, "setting": setting} for _, _, rs in results for r in rs]
    csv_path = write_csv(out.with_suffix(".csv"), rows, command=command)
    write_report(csv_path, kind="gpu_hours")


# ------------------------------------------------------------------------------------------------
# The report (python -m benchmarks.report renders the CSV with it)
# ------------------------------------------------------------------------------------------------


def _gpu_hours_results(rows: list[dict]) -> list[tuple[str, int, list[dict]]]:
    """CSV rows -> [(method, budget epochs, typed rows)], as gpu_hours.analyse takes them."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        typed = {
            "method": r["method"],
            "budget_epochs": int(r["budget_epochs"]),
            "epoch": int(r["epoch"]),
            "final": str(r["final"]) == "True",
            "top1": float(r["top1"]),
            "device_hours": float(r["device_hours"]),
            "synthesis_device_hours": float(r["synthesis_device_hours"]),
            "unit": r["unit"],
            "device_kind": r["device_kind"],
            "num_devices": int(r["num_devices"]),
        }
        runs.setdefault((typed["method"], typed["budget_epochs"]), []).append(typed)
    return [(m, e, rs) for (m, e), rs in runs.items()]


def plot_gpu_hours(rows: list[dict], path: Path) -> None:
    """Figure-1-style plot: student top-1 against device-hours (log x), one curve per run, its final
    result as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = _gpu_hours_results(rows)
    unit, setting = results[-1][2][-1]["unit"], rows[0].get("setting") or path.stem.removeprefix("gpu_hours_")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"nayer": "tab:red", "deepinversion": "tab:blue", "fast": "tab:green"}
    for m, e, rs in results:
        curve = [r for r in rs if not r["final"]]
        ax.plot(
            [r["device_hours"] for r in curve],
            [100 * r["top1"] for r in curve],
            marker=".",
            color=colors[m],
            alpha=0.35 + 0.65 * (e == max(ep for mm, ep, _ in results if mm == m)),
            label=f"{LABELS[m]} ({e} epochs)",
        )
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


@register("gpu_hours", plot=plot_gpu_hours)
def render_gpu_hours(rows: list[dict], name: str) -> str:
    """Table-2-shaped table (top-1, device-hours, synthesis-only hours, speed-up vs DeepInversion) and
    the headline sentences of ``gpu_hours.analyse``."""
    results = _gpu_hours_results(rows)
    per_run, sentences = analyse(results)
    last = results[-1][2][-1]
    unit, setting = last["unit"], rows[0].get("setting") or name.removeprefix("gpu_hours_")
    if "teacher_top1" not in rows[-1]:
        teacher = "Teacher top-1: not recorded in this CSV."
    elif blank(rows[-1]["teacher_top1"]):
        teacher = "No evaluation set."
    else:
        teacher = f"Teacher top-1: {100 * float(rows[-1]['teacher_top1']):.2f}%."
    lines = []
    for r in per_run:
        speed = f"{r['speedup_vs_di']:.2f}x" if r["speedup_vs_di"] is not None else "n/a"
        lines.append(
            [
                LABELS[r["method"]],
                r["budget_epochs"],
                f"{100 * r['top1']:.2f}",
                f"{r['device_hours']:.4f}",
                f"{r['synthesis_device_hours']:.4f}",
                speed,
            ]
        )
    md = [
        f"# Top-1 against {unit}: {setting}",
        "",
        *provenance_lines(rows),
        f"Runs on {last['device_kind']} x {last['num_devices']} process(es); {unit} = wall-clock x processes.",
        "",
        teacher,
        "",
        *table(
            ["Method", "Epochs", "Student top-1 (%)", unit, f"Synthesis-only {unit}", "Speed-up vs DeepInversion"],
            lines,
        ),
        "",
        *[f"- {s}" for s in sentences],
        "",
        f"Time-to-accuracy points: `{name}.csv`; plot: `{name}.png`.",
        "",
    ]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> None:
    """Run (or reuse) every --runs item, then write <out>.csv, .md and .png (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="fashion_mnist", help="preset family: fashion_mnist, cifar10, cifar100")
    p.add_argument(
        "--runs",
        nargs="+",
        default=["nayer:10", "nayer:20", "fast:60", "deepinversion:60"],
        help="method:epochs items, method in nayer, deepinversion, fast",
    )
    p.add_argument(
        "--out",
        default="benchmarks/results/gpu_hours_fashion_mnist",
        help="output path without suffix (.csv, .md and .png are written)",
    )
    p.add_argument("--processes", type=int, default=1, help="processes (GPUs) per run")
    add_common_args(p, "set", "launcher", "work_dir", work_dir="runs/gpu_hours")
    args = p.parse_args(argv)
    runs = parse_runs(args.runs)
    if len(set(runs)) != len(runs):
        raise SystemExit("--runs lists the same (method, epochs) twice")
    check_setting(args.setting, runs, args.set)
    command = command_line(argv, __file__)
    results = []
    for method, epochs in runs:
        run_dir = Path(args.work_dir) / args.setting / f"{method}-e{epochs}"
        cmd = run_command(args.setting, method, epochs, run_dir, args.processes, args.launcher, args.set)
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        summary, rows = read_run(run_dir, method, epochs)
        run = {"teacher_top1": summary["teacher_top1"], "precision": precision_label(summary.get("precision"))}
        results.append((method, epochs, [{**r, **run} for r in rows]))
    write_outputs(Path(args.out), args.setting, results, command)
    print("\n".join(analyse(results)[1]))
    print(f"wrote {args.out}.csv, {args.out}.md and {args.out}.png")


if __name__ == "__main__":
    main()
