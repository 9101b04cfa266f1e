"""ImageNet throughput of one process (one GPU) under the imagenet_r50 preset, and the projected
GPU-hours and single-node wall-clock of a full run.

    python -m benchmarks.imagenet_throughput                         # GPU: bf16/fp32 x eager/compile
    python -m benchmarks.imagenet_throughput --conditions bf16 bf16+compile --student tv_resnet18
    python -m benchmarks.imagenet_throughput --smoke                 # CPU: checks the script works

What is timed, with a random-weight teacher (throughput does not depend on the weights) and the
preset's sizes (synthesis batch 256 at 224 px, 60 generator steps; student batch 256):
  - synthesis: ``NayerTrainer.synthesize`` for ``--synthesis-batches`` batches (after one untimed
    warm-up batch): synthesis images/s = final images per second (batch / seconds per batch) and
    generator-step images/s (batch x generator steps / seconds per batch);
  - student: ``NayerTrainer.distill`` over ``--student-steps`` steps on the memory bank (after
    untimed warm-up steps): student images/s;
  - peak CUDA memory of each phase (``torch.cuda.max_memory_allocated``).
Each condition is a precision (bf16 autocast or fp32) with or without torch.compile (student and
the teacher's KD forward). Projection for the full preset (E = 320 epochs, 20 of them warm-up):
per-process wall = synthesis batches per process / batches per second + student steps per process
/ steps per second (memory-bank I/O, evaluation and checkpoints left out). Sizes are per process,
so with N GPUs of one node each does the same work: single-node wall = that, GPU-hours = N x that.

Rows are appended to benchmarks/results/imagenet_throughput.csv (with the provenance columns of
benchmarks/lib/provenance.py on every row: device, versions, commit, precision, command, time) and the
markdown table benchmarks/results/imagenet_throughput.md is rewritten from the CSV
(``python -m benchmarks.report benchmarks/results/imagenet_throughput.csv`` does the same).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import torch

from benchmarks.lib.provenance import (
    ROOT,
    add_common_args,
    command_line,
    device_name,
    git_commit,
    results_dir,
    write_csv,
)
from benchmarks.lib.report import provenance_lines, register, short_commit, table, write_report
from benchmarks.lib.timing import peak_gb, reset_peak, timed

COLUMNS = [
    "condition",
    "student",
    "image_size",
    "synthesis_batch",
    "generator_steps",
    "student_batch",
    "synthesis_images_per_s",
    "generator_step_images_per_s",
    "student_images_per_s",
    "synthesis_peak_gb",
    "student_peak_gb",
    "projected_hours_per_process",
    "projected_gpu_hours_8",
    "device",
    "torch",
    "commit",
    "date",
]
SMOKE = [
    "teacher.image_size=32",
    "synthesis.batch_size=8",
    "synthesis.num_generator_steps=2",
    "synthesis.generator_width=8",
    "synthesis.noise_dim=32",
    "distill.batch_size=8",
    "lte.encoder=hashed:64",
]


def measure(condition: str, student: str, overrides: list[str], synthesis_batches: int, student_steps: int) -> dict:
    """One condition ("bf16", "fp32", "bf16+compile", "fp32+compile"): a trainer on a temporary run
    folder, timed synthesis batches and student steps. Returns a CSV row."""
    from nayer_scale.config import apply_overrides
    from nayer_scale.recipes import get_preset
    from nayer_scale.synthesis import batches_before_epoch
    from nayer_scale.trainer import NayerTrainer

    precision, _, compiled = condition.partition("+")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(
            get_preset("imagenet_r50"),
            [
                "teacher.weights=",
                f"student.arch={student}",
                "eval.dataset=none",
                f"run.run_dir={tmp}/run",
                f"run.mixed_precision={'bf16' if precision == 'bf16' else 'no'}",
                f"run.compile={bool(compiled)}",
                "run.resume=false",
                "run.progress=false",
                "memory.cache=device",
                f"distill.steps_per_epoch={student_steps}",
                *overrides,
            ],
        ).validate()
        trainer = NayerTrainer(cfg)
        s, d, run = cfg.synthesis, cfg.distill, cfg.run
        epoch = run.warmup_epochs  # after warm-up: the adversarial term (student forward) is on
        trainer.synthesize_batch(epoch, 0)  # warm-up (and compile) batch, untimed
        reset_peak()  # a timed batch: synthesis and its shard written to the memory bank, as in a run
        synth_s = timed(lambda b: trainer.synthesize_batch(epoch, b + 1), synthesis_batches)
        synth_peak = peak_gb(missing=float("nan"))
        trainer.distill_steps(student_steps)  # warm-up (and compile) steps, untimed
        reset_peak()
        step_s = timed(lambda _: trainer.distill_steps(student_steps), 1) / student_steps
        student_peak = peak_gb(missing=float("nan"))
    batches = batches_before_epoch(run.epochs, run.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    steps = (run.epochs - run.warmup_epochs) * get_preset("imagenet_r50").distill.steps_per_epoch
    hours = (batches * synth_s + steps * step_s) / 3600
    return {
        "condition": condition,
        "student": student,
        "image_size": cfg.teacher.image_size,
        "synthesis_batch": s.batch_size,
        "generator_steps": s.num_generator_steps,
        "student_batch": d.batch_size,
        "synthesis_images_per_s": round(s.batch_size / synth_s, 2),
        "generator_step_images_per_s": round(s.batch_size * s.num_generator_steps / synth_s, 1),
        "student_images_per_s": round(d.batch_size / step_s, 1),
        "synthesis_peak_gb": round(synth_peak, 2),
        "student_peak_gb": round(student_peak, 2),
        "projected_hours_per_process": round(hours, 2),
        "projected_gpu_hours_8": round(8 * hours, 1),
        "device": device_name(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
    }


@register("imagenet_throughput")
def render_imagenet_throughput(rows: list[dict], name: str) -> str:
    """Images/s, peak memory and the projected hours of the full imagenet_r50 preset per condition."""
    shown = ("device", "torch", "commit", "timestamp", "date", "precision")
    lines = [
        "# ImageNet throughput per process (imagenet_r50 preset)",
        "",
        "Random-weight ResNet-50 teacher; sizes per process. Projection: the full preset (320 epochs, 20 warm-up) "
        "on one process = hours per process = single-node wall-clock with any number of GPUs (each does the same "
        "work); GPU-hours on 8 GPUs = 8 x that. Memory-bank I/O, evaluation and checkpoints are not in the "
        "projection.",
        "",
        *provenance_lines(rows, skip=shown),
        *table(
            [
                "condition",
                "student",
                "synth img/s",
                "gen-step img/s",
                "student img/s",
                "synth peak GB",
                "student peak GB",
                "h per process (= 1-node wall)",
                "GPU-h on 8 GPUs",
                "device",
                "torch",
                "commit",
            ],
            [
                [
                    r["condition"],
                    r["student"],
                    r["synthesis_images_per_s"],
                    r["generator_step_images_per_s"],
                    r["student_images_per_s"],
                    r["synthesis_peak_gb"],
                    r["student_peak_gb"],
                    r["projected_hours_per_process"],
                    r["projected_gpu_hours_8"],
                    r["device"],
                    r["torch"],
                    short_commit(r["commit"]),
                ]
                for r in rows
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure each condition in its own process; append the rows to imagenet_throughput.csv and
    rewrite imagenet_throughput.md. Returns the exit status (2: no GPU without --smoke)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["bf16", "fp32", "bf16+compile", "fp32+compile"],
        choices=["bf16", "fp32", "bf16+compile", "fp32+compile"],
    )
    p.add_argument("--student", default="tv_resnet50")
    p.add_argument("--synthesis-batches", type=int, default=3)
    p.add_argument("--student-steps", type=int, default=20)
    add_common_args(
        p, "set", "results_dir", "smoke", smoke_help="tiny sizes on CPU: checks the script, measures nothing"
    )
    p.add_argument("--measure-one", help=argparse.SUPPRESS)  # internal: one condition, JSON row on stdout
    args = p.parse_args(argv)
    if args.measure_one:
        print(json.dumps(measure(args.measure_one, args.student, args.set, args.synthesis_batches, args.student_steps)))
        return 0
    if not torch.cuda.is_available() and not args.smoke:
        print("imagenet_throughput: a CUDA GPU is needed; on CPU run with --smoke.")
        return 2
    overrides = list(args.set) + (SMOKE if args.smoke else [])
    csv_path = results_dir(args, "imagenet_throughput") / "imagenet_throughput.csv"
    command = command_line(argv, __file__)
    for condition in args.conditions:
        # one process per condition: an Accelerator's precision is fixed for the process's lifetime
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.imagenet_throughput",
            "--measure-one",
            condition,
            "--student",
            args.student,
            "--synthesis-batches",
            str(args.synthesis_batches),
            "--student-steps",
            str(args.student_steps),
        ]
        cmd += [arg for item in overrides for arg in ("--set", item)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print({k: row[k] for k in COLUMNS[:13]}, flush=True)
        # appended at once: a later condition that fails keeps the finished ones
        write_csv(csv_path, [row], append=True, precision=condition.partition("+")[0], command=command)
    md_path = write_report(csv_path, kind="imagenet_throughput")
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
