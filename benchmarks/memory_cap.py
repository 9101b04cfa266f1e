"""Paper Table 5 at small scale: student top-1 against the memory-bank cap (FIFO and reservoir).

    python -m benchmarks.memory_cap --jobs 3 --seeds 0 1 --set synthesis.num_generator_steps=5 \\
        --set distill.steps_per_epoch=240 --set eval.every_epochs=100            # the committed, reduced budget
    python -m benchmarks.memory_cap                                            # the full fashion_mnist preset (~2 h on 2 cores)
    python -m benchmarks.memory_cap --smoke                                    # checks the script

Each run is the ``fashion_mnist`` preset (``launch/distill.py``) with ``memory.max_images`` set to
one of ``--caps`` (0 = unbounded, the published setting) and ``memory.retirement`` to fifo or
reservoir; everything else, including the seed (``--seeds``: one repetition per ``run.seed``; the
table shows the mean and each seed), is the same. The preset makes 11 synthesis batches
of 200 images (2200 images in all), so caps of 400-1600 images keep 18-73% of the history. The
CSV/markdown report the student's top-1 on the 10,000 real test images, the memory size at the
end, and the wall time of each run; the plot (``memory_cap_fashion_mnist.png``) draws top-1 against
the cap. NAYER's paper (Table 5, CIFAR-10, ResNet-34 -> ResNet-18): 90.41% with 5k images, 91.64%
with 100k, 91.94% with all.

A run folder under ``--work-dir`` whose run finished (``summary.json``) with the same settings is
reused as it is, so more caps can be added to a study later; one with other settings is refused
(delete it, or use another ``--work-dir``); an unfinished one is resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.lib.provenance import ROOT, add_common_args, command_line, results_dir, write_csv
from benchmarks.lib.report import provenance_lines, register, table, write_report
from nayer_scale.config import ConfigError, check_resume_compatible
from nayer_scale.recipes import compose_config


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: caps, retirement policies, seeds, parallel jobs and the common arguments."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--caps", nargs="+", type=int, default=[400, 800, 1200, 1600, 0])
    p.add_argument("--policies", nargs="+", default=["fifo", "reservoir"], choices=["fifo", "reservoir"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="run.seed of each repetition (default: 0)")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time (each gets cores / jobs threads)")
    add_common_args(p, "set", "work_dir", "results_dir", "smoke", work_dir="runs/memory_cap")
    return p.parse_args(argv)


def _study_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides of every run; with ``--smoke``, the toy sizes appended (and ``args.caps``
    set to 48 images and the whole history)."""
    overrides = list(args.set)
    if args.smoke:
        args.caps, overrides = (
            [48, 0],
            overrides
            + [
                "teacher.arch=resnet20",
                "synthesis.batch_size=24",
                "synthesis.num_generator_steps=1",
                "distill.steps_per_epoch=2",
                "run.epochs=4",
                "eval.every_epochs=10",
                "synthesis.generator_width=8",
            ],
        )
    return overrides


def _run_dir(work: Path, cap: int, policy: str, seed: int) -> Path:
    """The run folder of one (cap, retirement, seed) run under ``work`` (cap 0: the unbounded run)."""
    return work / ((f"cap{cap}-{policy}" if cap else "unbounded") + (f"-seed{seed}" if seed else ""))


def _settings(work: Path, run: tuple[int, str, int], threads: list[str], overrides: list[str]) -> list[str]:
    """The ``launch/distill.py`` overrides of one (cap, retirement, seed) run."""
    cap, policy, seed = run
    return [
        f"run.run_dir={_run_dir(work, *run)}",
        "run.resume=true",
        "run.progress=false",
        f"run.seed={seed}",
        f"memory.max_images={cap}",
        f"memory.retirement={policy}",
        *threads,
        *overrides,
    ]


def _launch(settings: list[str], jobs: int) -> None:
    """Run ``launch/distill.py preset=fashion_mnist`` with ``settings`` (its output hidden when ``jobs > 1``).

    Raises:
        subprocess.CalledProcessError: the run failed.
    """
    cmd = [sys.executable, str(ROOT / "launch" / "distill.py"), "preset=fashion_mnist", *settings]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(
        cmd,
        check=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL if jobs > 1 else None,
    )


def _summary_rows(work: Path, runs: list[tuple[int, str, int]], overrides: list[str]) -> list[dict]:
    """One CSV row per run, read from its ``summary.json`` (top-1 in %, wall seconds rounded)."""
    rows = []
    for cap, policy, seed in runs:
        summary = json.loads((_run_dir(work, cap, policy, seed) / "summary.json").read_text())
        rows.append(
            {
                "max_images": cap or "all",
                "retirement": policy if cap else "-",
                "seed": seed,
                "memory_size_end": summary["memory_size"],
                "student_top1": round(100 * summary["student_top1"], 2),
                "teacher_top1": round(100 * summary["teacher_top1"], 2),
                "wall_s": round(summary["wall_s"]),
                "overrides": " ".join(overrides),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse) every (cap, retirement, seed) run, then write the CSV, markdown and plot."""
    args = _parse_args(argv)
    command = command_line(argv, __file__)
    overrides = _study_overrides(args)
    threads = [f"run.cpu_threads={max(1, (os.cpu_count() or 1) // args.jobs)}"]
    runs = [
        (cap, policy, seed)
        for seed in args.seeds
        for cap in args.caps
        for policy in (args.policies if cap else ["fifo"])
    ]
    work = Path(args.work_dir) / ("smoke" if args.smoke else "")
    runs_to_do = []
    for run in runs:  # before any work: a finished run is reused, a run with other settings refused
        if finished(_run_dir(work, *run), _settings(work, run, threads, overrides)):
            print(f"reusing the finished run {_run_dir(work, *run)}", flush=True)
        else:
            runs_to_do.append(run)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda run: _launch(_settings(work, run, threads, overrides), args.jobs), runs_to_do))
    rows = _summary_rows(work, runs, overrides)
    out = results_dir(args, "memory_cap") / ("memory_cap_smoke.csv" if args.smoke else "memory_cap_fashion_mnist.csv")
    if out.exists():
        out.unlink()
    write_csv(out, rows, command=command)
    md = write_report(out, kind="memory_cap")
    print(md.read_text())
    if args.smoke:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def finished(run_dir: Path, overrides: list[str]) -> bool:
    """Whether ``run_dir`` holds a finished run (its ``summary.json``) of the ``fashion_mnist`` preset
    with ``overrides``. Fields a resume may change (``RESUMABLE_FIELDS``: evaluation, threads, caches)
    are not compared.

    Raises:
        ConfigError: the folder holds a run (finished or not) with other settings, named field by field.
    """
    saved = run_dir / "config.json"
    if not saved.exists():
        return False
    now = compose_config("fashion_mnist", overrides=overrides).to_dict()
    old = {k: v for k, v in json.loads(saved.read_text()).items() if k in now}
    try:
        check_resume_compatible(old, now)
    except ConfigError as err:
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({err}); delete it or give another --work-dir"
        ) from None
    if old["run"]["epochs"] != now["run"]["epochs"]:
        raise ConfigError(
            f"{run_dir} holds a run of {old['run']['epochs']} epochs, this study asks for "
            f"{now['run']['epochs']}; delete it or give another --work-dir"
        )
    return (run_dir / "summary.json").exists()


def _cells(rows: list[dict]) -> tuple[list[str], dict[tuple[str, str], list[float]]]:
    """The caps in ascending order ("all" last) and the student top-1 of every seed by (cap, retirement)."""
    by: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by.setdefault((str(r["max_images"]), str(r["retirement"])), []).append(float(r["student_top1"]))
    caps = sorted({c for c, _ in by if c != "all"}, key=int) + (["all"] if ("all", "-") in by else [])
    return caps, by


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def render_table(rows: list[dict], name: str) -> str:
    """Table-5-shaped markdown of the CSV rows: student top-1 per cap (rows) and retirement (columns),
    the whole history last, and each cap's share of the images made."""
    caps, by = _cells(rows)
    made = next((int(r["memory_size_end"]) for r in rows if str(r["max_images"]) == "all"), None)
    seeds = sorted({str(r.get("seed") or 0) for r in rows}, key=int)

    def top1(cap: str, policy: str) -> str:
        values = by.get((cap, policy))
        if not values:
            return "-"
        each = f" ({', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
        return f"{_mean(values):.2f}{each}"

    body = [
        [
            cap,
            "100%" if cap == "all" else f"{100 * int(cap) / made:.0f}%" if made else "?",
            *((top1(cap, "-"), "-") if cap == "all" else (top1(cap, "fifo"), top1(cap, "reservoir"))),
        ]
        for cap in caps
    ]
    per_cell = (
        f"Mean over seeds {', '.join(seeds)} (each seed in brackets)"
        if len(seeds) > 1
        else f"One seed per cell (run.seed={seeds[0]})"
    )
    first = rows[0]
    lines = [
        f"# Student top-1 against the memory-bank cap: {name}",
        "",
        *provenance_lines(rows),
        f"Preset `fashion_mnist` with `{first.get('overrides') or 'no overrides'}`; teacher top-1 "
        f"{float(first['teacher_top1']):.2f}%; top-1 on the 10,000 real test images (%). "
        f"{per_cell}. Plot: `{name}.png`.",
        "",
        *table(
            ["memory.max_images", "share of the images made", "FIFO (newest kept)", "reservoir (uniform over history)"],
            body,
            ["---:"] * 4,
        ),
        "",
        "Paper (Table 5, CIFAR-10, ResNet-34 -> ResNet-18): 90.41% at 5k images, 91.64% at 100k, 91.94% with all.",
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Student top-1 against the cap, one line per retirement, the unbounded run as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps, by = _cells(rows)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for policy, color in (("fifo", "tab:red"), ("reservoir", "tab:blue")):
        capped = [c for c in caps if (c, policy) in by]
        if capped:
            ax.plot(
                [int(c) for c in capped],
                [_mean(by[(c, policy)]) for c in capped],
                marker="o",
                color=color,
                label=f"{policy} retirement (mean)",
            )
            for c in capped:  # every seed as a dot
                ax.scatter([int(c)] * len(by[(c, policy)]), by[(c, policy)], color=color, s=12, alpha=0.5)
    if ("all", "-") in by:
        made = next(r["memory_size_end"] for r in rows if str(r["max_images"]) == "all")
        ax.axhline(_mean(by[("all", "-")]), color="black", linestyle="--", label=f"whole history ({made} images)")
    ax.set_xlabel("memory.max_images (images kept)")
    ax.set_ylabel("student top-1 (%)")
    ax.set_title(f"Memory-bank cap: {path.stem}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


register("memory_cap", plot=plot)(render_table)


if __name__ == "__main__":
    sys.exit(main())
