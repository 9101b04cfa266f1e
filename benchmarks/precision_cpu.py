"""What precision and memory format cost on this CPU: the measurement behind ``run.mixed_precision=auto``
and ``run.channels_last=auto`` (nayer_scale/precision.py).

    python -m benchmarks.precision_cpu                       # all conditions, ~5 min on 2 AVX2 cores
    python -m benchmarks.precision_cpu --conditions fp32 fp32+cl --steps 3
    python -m benchmarks.precision_cpu --smoke               # tiny sizes: checks the script

Timed on the Fashion-MNIST demo's shapes, with random weights (speed does not depend on them):
  - ``teacher_step_s``: one SGD step of the ResNet-20 teacher on a batch of 256 28x28 images
    (``launch/train_teacher.py``);
  - ``generator_step_s``: one NAYER generator step of the ``fashion_mnist`` preset (synthesis batch
    200, generator + noisy layer forward, augmentation, hooked teacher forward, BN-statistics / CE /
    adversarial losses, backward, Adam), through ``NayerTrainer.synthesize``;
  - ``student_step_s``: one student step (ResNet-8, batch 256: teacher forward + KD loss + SGD),
    through ``NayerTrainer.distill``.
Conditions: fp32 or bf16 autocast, NCHW or channels_last (``+cl``). Medians over ``--steps`` timed
repetitions after one untimed warm-up. Rows are appended to ``benchmarks/results/precision_cpu.csv``
with the provenance columns of benchmarks/lib/provenance.py (the CPU model with its bf16 flags and threads,
library versions, commit, command, time); ``precision_cpu.md`` is rewritten from the CSV
(benchmarks.lib.report). With ``--smoke`` they go to a temporary folder unless --results-dir is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from benchmarks.cpu_demo import demo_trainer
from benchmarks.lib.provenance import add_common_args, command_line, provenance, results_dir, write_csv
from benchmarks.lib.report import date_of, provenance_lines, register, short_commit, table, write_report

CONDITIONS = ["fp32", "fp32+cl", "bf16", "bf16+cl"]


def _median_time(fn, steps: int) -> float:
    fn()  # warm-up, untimed
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(condition: str, steps: int, smoke: bool) -> dict:
    """One condition: teacher, generator and student step times (seconds) and the torch threads.
    Returns a CSV row (write_csv adds the device, versions and commit)."""
    from nayer_scale.models import build_model

    precision, _, layout = condition.partition("+")
    mixed = "bf16" if precision == "bf16" else "no"
    memory_format = torch.channels_last if layout == "cl" else torch.contiguous_format
    batch = 16 if smoke else 256
    # teacher training step (launch/train_teacher.py)
    model = build_model("resnet20", num_classes=10, in_channels=1).to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed == "bf16")

    def teacher_step():
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    teacher_s = _median_time(teacher_step, steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, epoch, student_step = demo_trainer(
            tmp,
            [
                f"run.mixed_precision={mixed}",
                f"run.channels_last={layout == 'cl'}",
                "synthesis.num_generator_steps=1",
                "distill.steps_per_epoch=1",
                "distill.batch_size=256",
            ],
            smoke,
        )
        generator_s = _median_time(lambda: trainer.synthesize(epoch, 1), steps)
        student_s = _median_time(student_step, steps)
    return {
        "condition": condition,
        "teacher_step_s": round(teacher_s, 3),
        "generator_step_s": round(generator_s, 3),
        "student_step_s": round(student_s, 3),
        "threads": torch.get_num_threads(),
    }


@register("precision_cpu")
def render_precision_cpu(rows: list[dict], name: str) -> str:
    """Seconds per teacher / generator / student step per condition, one row per measurement."""
    shown = ("device", "torch", "commit", "timestamp", "date", "precision")
    lines = [
        "# Precision and memory format on CPU (Fashion-MNIST demo shapes)",
        "",
        "Seconds per step, medians (random weights): ResNet-20 teacher SGD step at batch 256; one NAYER generator "
        "step of the `fashion_mnist` preset (batch 200); one student step (ResNet-8, batch 256). `+cl` = "
        "channels_last.",
        "",
        *provenance_lines(rows, skip=shown),
        *table(
            [
                "condition",
                "teacher step s",
                "generator step s",
                "student step s",
                "threads",
                "device",
                "torch",
                "commit",
                "date",
            ],
            [
                [
                    r["condition"],
                    r["teacher_step_s"],
                    r["generator_step_s"],
                    r["student_step_s"],
                    r["threads"],
                    r["device"],
                    r["torch"],
                    short_commit(r["commit"]),
                    date_of(r),
                ]
                for r in rows
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure each condition; append the rows to precision_cpu.csv and rewrite precision_cpu.md."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", nargs="+", default=CONDITIONS, choices=CONDITIONS)
    p.add_argument("--steps", type=int, default=3, help="timed repetitions per measurement (median)")
    add_common_args(p, "results_dir", "smoke")
    args = p.parse_args(argv)
    csv_path = results_dir(args, "precision_cpu") / "precision_cpu.csv"
    command = command_line(argv, __file__)
    for condition in args.conditions:
        row = measure(condition, args.steps, args.smoke)
        fields = provenance(precision=condition.partition("+")[0], command=command)
        print({**row, "device": fields["device"]}, flush=True)
        write_csv(csv_path, [row], append=True, fields=fields)  # at once: a later failure keeps this row
    md_path = write_report(csv_path, kind="precision_cpu")
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
