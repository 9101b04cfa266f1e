"""Weak scaling: synthesis and student throughput PER PROCESS at 1 and N processes (the same
per-process sizes), and the efficiency = per-process throughput at N / at 1 (1.0 = perfect).

    python -m benchmarks.weak_scaling                              # 1 and 2 processes, one thread each
    python -m benchmarks.weak_scaling --scopes process global      # also synthesis.bn_stats_scope=global
    python -m benchmarks.weak_scaling --processes 1 2 4 --device cuda   # GPUs (needs N GPUs for N processes)
    python -m benchmarks.weak_scaling --smoke                      # tiny sizes: checks the script

Each (processes, scope) condition is one ``accelerate launch`` of this script in worker mode (CPU:
gloo DDP, ACCELERATE_USE_CPU=1, ``run.cpu_threads=1`` and OMP_NUM_THREADS=1 per process; CUDA:
one GPU per process, NCCL). The worker builds ``NayerTrainer`` from the ``fashion_mnist`` preset
(the shipped teacher; ``eval.dataset=none``, the weight-free ``hashed`` label-text encoder: neither
changes the timed work) plus ``--set`` overrides, then, after one untimed warm-up of each phase,
times ``--synthesis-batches`` synthesis batches (adversarial term on, as after warm-up) and
``--student-steps`` student steps, with a barrier before and after each timed phase, so the slowest
process sets the time (what a run sees). Per process:
  synthesis images/s = synthesis.batch_size / seconds per batch
  student images/s   = distill.batch_size / seconds per step
The worker reports the mean over processes; efficiency divides by the 1-process ``process``-scope
row of the same invocation. Rows go to benchmarks/results/weak_scaling.csv (provenance columns of
benchmarks/lib/provenance.py on every row) and the table to weak_scaling.md.

The build machine has 2 cores shared with other jobs: rerun alone for numbers worth quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.lib.provenance import ROOT, add_common_args, command_line, provenance, results_dir, write_csv
from benchmarks.lib.report import register, write_report
from benchmarks.lib.timing import timed

MARKER = "WEAK_SCALING_ROW "
BASE = [
    "eval.dataset=none",
    "lte.encoder=hashed",
    "run.progress=false",
    "run.resume=false",
    "run.cpu_threads=1",
    "run.mixed_precision=no",
]
SMOKE = [
    "synthesis.batch_size=16",
    "synthesis.num_generator_steps=2",
    "synthesis.generator_width=8",
    "synthesis.noise_dim=32",
    "distill.batch_size=16",
    "teacher.arch=resnet8",
    "teacher.weights=",
    "student.arch=resnet8",
]
COLUMNS = [
    "processes",
    "bn_stats_scope",
    "synthesis_images_per_s_per_process",
    "student_images_per_s_per_process",
    "synthesis_efficiency",
    "student_efficiency",
    "synthesis_s_per_batch",
    "student_s_per_step",
    "synthesis_batch",
    "generator_steps",
    "student_batch",
    "bn_allreduce_bytes_per_step",
]


def worker(args: argparse.Namespace) -> None:
    """Worker mode (one process of the launch): time both phases, print the row on rank 0."""
    import torch

    from nayer_scale.config import apply_overrides
    from nayer_scale.recipes import get_preset
    from nayer_scale.trainer import NayerTrainer

    with tempfile.TemporaryDirectory() as tmp:
        # every process of the launch uses rank 0's folder name: the run folder is shared
        run_dir = os.environ.get("WEAK_SCALING_RUN_DIR", f"{tmp}/run")
        cfg = apply_overrides(
            get_preset("fashion_mnist"),
            [
                *BASE,
                f"run.run_dir={run_dir}",
                f"synthesis.bn_stats_scope={args.scope}",
                f"distill.steps_per_epoch={args.student_steps}",
                *args.set,
            ],
        ).validate()
        trainer = NayerTrainer(cfg)
        acc, s, d = trainer.accelerator, cfg.synthesis, cfg.distill
        epoch = cfg.run.warmup_epochs  # after warm-up: the adversarial term (student forward) is on

        trainer.synthesize_batch(epoch, 0)  # untimed warm-up batch
        # a timed batch: synthesis and its shard, as in a run
        synth_s = timed(lambda b: trainer.synthesize_batch(epoch, b + 1), args.synthesis_batches, acc.wait_for_everyone)
        acc.wait_for_everyone()
        trainer.memory.refresh()  # every process's shards listed (what the end of a synthesis phase does)
        trainer.distill_steps(d.steps_per_epoch)  # untimed warm-up of the student steps
        step_s = timed(lambda _: trainer.distill_steps(d.steps_per_epoch), 1, acc.wait_for_everyone) / d.steps_per_epoch
        times = acc.gather(torch.tensor([[synth_s, step_s]], device=trainer.device)).double()
        mean_synth, mean_step = times.mean(0).tolist()
        if acc.is_main_process:
            row = {
                "processes": acc.num_processes,
                "bn_stats_scope": args.scope,
                "synthesis_images_per_s_per_process": round(s.batch_size / mean_synth, 2),
                "student_images_per_s_per_process": round(d.batch_size / mean_step, 1),
                "synthesis_s_per_batch": round(mean_synth, 3),
                "student_s_per_step": round(mean_step, 4),
                "synthesis_batch": s.batch_size,
                "generator_steps": s.num_generator_steps,
                "student_batch": d.batch_size,
                "bn_allreduce_bytes_per_step": 4 * trainer.hooks.global_buffer_numel()
                if args.scope == "global" and acc.num_processes > 1
                else 0,
            }
            print(MARKER + json.dumps(row), flush=True)
        acc.wait_for_everyone()


def _launch(n: int, scope: str, args: argparse.Namespace, device: str) -> dict:
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        raise SystemExit("weak_scaling: the `accelerate` command is not on PATH")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    head = [
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(args.port),
    ]
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "1"
        head = (["--cpu"] if n == 1 else ["--multi_gpu"]) + head
    elif n > 1:
        head = ["--multi_gpu"] + head
    overrides = list(args.set) + (SMOKE if args.smoke else [])
    with tempfile.TemporaryDirectory() as tmp:
        env["WEAK_SCALING_RUN_DIR"] = f"{tmp}/run"
        # -m: the worker is this module, imported from the repository root (cwd)
        cmd = [
            accelerate,
            "launch",
            *head,
            "-m",
            "benchmarks.weak_scaling",
            "--worker",
            "--scope",
            scope,
            "--synthesis-batches",
            str(args.synthesis_batches),
            "--student-steps",
            str(args.student_steps),
            *[a for item in overrides for a in ("--set", item)],
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    rows = [json.loads(line[len(MARKER) :]) for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not rows:
        raise SystemExit(
            f"weak_scaling: {n} process(es), scope {scope} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return rows[0]


@register("weak_scaling")
def render_weak_scaling(rows: list[dict], name: str) -> str:
    """The table of every row (newest last) with its device and commit, and the commands."""
    lines = [
        "# Weak scaling: throughput per process at N processes / at 1",
        "",
        "| processes | bn_stats_scope | synthesis img/s per process | efficiency | student img/s per process "
        "| efficiency | BN all-reduce bytes / generator step | device | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['bn_stats_scope']} | {r['synthesis_images_per_s_per_process']} | "
            f"{r['synthesis_efficiency']} | {r['student_images_per_s_per_process']} | "
            f"{r['student_efficiency']} | {r['bn_allreduce_bytes_per_step']} | {r['device']} | "
            f"{r['commit']} |"
        )
    commands = sorted({r["command"] for r in rows})
    lines += [
        "",
        "Commands:",
        "",
        *[f"    {c}" for c in commands],
        "",
        "Sizes per process are the same at every N (weak scaling); each condition is one "
        "`accelerate launch`; the slowest process sets each timed phase.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Launch each (processes, scope) condition, append its row to weak_scaling.csv at once, then
    render weak_scaling.md. Returns 0 (argparse errors for an invalid set of processes)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--scopes",
        nargs="+",
        default=["process"],
        choices=["process", "global"],
        help="synthesis.bn_stats_scope of the runs with more than one process",
    )
    p.add_argument("--synthesis-batches", type=int, default=2)
    p.add_argument("--student-steps", type=int, default=20)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--port", type=int, default=29561)
    add_common_args(p, "set", "results_dir", "smoke", smoke_help="tiny sizes: checks the script, measures nothing")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scope", default="process", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if 1 not in args.processes:
        p.error("--processes must include 1 (the baseline of the efficiency)")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(1)  # the provenance's device label then names the workers' one thread
    if device == "cuda" and torch.cuda.device_count() < max(args.processes):
        p.error(
            f"--device cuda with {max(args.processes)} processes needs as many GPUs "
            f"({torch.cuda.device_count()} visible)"
        )
    folder = results_dir(args, "weak_scaling")
    csv_path, command = folder / "weak_scaling.csv", command_line(argv, __file__)
    fields = provenance("no", command)
    base = None
    for n in sorted(args.processes):
        for scope in ["process"] if n == 1 else args.scopes:
            row = _launch(n, scope, args, device)
            base = base or row
            row["synthesis_efficiency"] = round(
                row["synthesis_images_per_s_per_process"] / base["synthesis_images_per_s_per_process"], 3
            )
            row["student_efficiency"] = round(
                row["student_images_per_s_per_process"] / base["student_images_per_s_per_process"], 3
            )
            row = {k: row[k] for k in COLUMNS}
            print(row, flush=True)
            write_csv(csv_path, [row], append=True, fields=fields)
    md_path = write_report(csv_path, kind="weak_scaling")
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
