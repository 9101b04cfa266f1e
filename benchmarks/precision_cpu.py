"""What precision and memory format cost on this CPU: the measurement behind ``run.mixed_precision=auto``
and ``run.channels_last=auto`` (nayer_scale/precision.py).

    python benchmarks/precision_cpu.py                       # all conditions, ~5 min on 2 AVX2 cores
    python benchmarks/precision_cpu.py --conditions fp32 fp32+cl --steps 3
    python benchmarks/precision_cpu.py --smoke               # tiny sizes: checks the script

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
with the CPU model, its bf16 flags, torch version and commit; ``precision_cpu.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cpu_demo import demo_trainer  # benchmarks/cpu_demo.py
from provenance import device_name, git_commit  # benchmarks/provenance.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = ["fp32", "fp32+cl", "bf16", "bf16+cl"]
COLUMNS = ["condition", "teacher_step_s", "generator_step_s", "student_step_s", "threads", "device", "torch",
           "commit", "date"]


def _median_time(fn, steps: int) -> float:
    fn()  # warm-up, untimed
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(condition: str, steps: int, smoke: bool) -> dict:
    """One condition: teacher, generator and student step times (seconds). Returns a CSV row."""
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
            tmp, [f"run.mixed_precision={mixed}", f"run.channels_last={layout == 'cl'}",
                  "synthesis.num_generator_steps=1", "distill.steps_per_epoch=1", "distill.batch_size=256"], smoke)
        generator_s = _median_time(lambda: trainer.synthesize(epoch, 1), steps)
        student_s = _median_time(student_step, steps)
    return {"condition": condition, "teacher_step_s": round(teacher_s, 3), "generator_step_s": round(generator_s, 3),
            "student_step_s": round(student_s, 3), "threads": torch.get_num_threads(), "device": device_name(),
            "torch": torch.__version__, "commit": git_commit(), "date": datetime.date.today().isoformat()}


def write_markdown(csv_path: Path, md_path: Path) -> None:
    rows = list(csv.DictReader(csv_path.open()))
    lines = ["# Precision and memory format on CPU (Fashion-MNIST demo shapes)", "",
             "Command: `python benchmarks/precision_cpu.py`. Seconds per step, medians (random weights): ResNet-20 "
             "teacher SGD step at batch 256; one NAYER generator step of the `fashion_mnist` preset (batch 200); one "
             "student step (ResNet-8, batch 256). `+cl` = channels_last.", "",
             "| condition | teacher step s | generator step s | student step s | threads | device | torch | commit | date |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['teacher_step_s']} | {r['generator_step_s']} | {r['student_step_s']} | "
                     f"{r['threads']} | {r['device']} | {r['torch']} | {r['commit'][:12]} | {r['date']} |")
    md_path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", nargs="+", default=CONDITIONS, choices=CONDITIONS)
    p.add_argument("--steps", type=int, default=3, help="timed repetitions per measurement (median)")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    args = p.parse_args(argv)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = args.results_dir / "precision_cpu.csv", args.results_dir / "precision_cpu.md"
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for condition in args.conditions:
            row = measure(condition, args.steps, args.smoke)
            print(row, flush=True)
            writer.writerow(row)
            f.flush()
    write_markdown(csv_path, md_path)
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
