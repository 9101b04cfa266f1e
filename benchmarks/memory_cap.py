"""Paper Table 5 at small scale: student top-1 against the memory-bank cap (FIFO and reservoir).

    python benchmarks/memory_cap.py --jobs 2 \\
        --set synthesis.num_generator_steps=5 --set distill.steps_per_epoch=360   # the committed, reduced budget
    python benchmarks/memory_cap.py                                               # the full fashion_mnist preset (~2 h on 2 cores)
    python benchmarks/memory_cap.py --smoke                                       # checks the script

Each run is the ``fashion_mnist`` preset (``launch/distill.py``) with ``memory.max_images`` set to
one of ``--caps`` (0 = unbounded, the published setting) and ``memory.retirement`` to fifo or
reservoir; everything else, including the seed, is the same. The preset makes 11 synthesis batches
of 200 images (2200 images in all), so caps of 400-1600 images keep 18-73% of the history. The
CSV/markdown report the student's top-1 on the 10,000 real test images, the memory size at the
end, and the wall time of each run. NAYER's paper (Table 5, CIFAR-10, ResNet-34 -> ResNet-18):
90.41% with 5k images, 91.64% with 100k, 91.94% with all.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import report  # benchmarks/report.py
from common import ROOT, add_common_args, command_line, results_dir, write_csv  # benchmarks/common.py


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--caps", nargs="+", type=int, default=[400, 800, 1200, 1600, 0])
    p.add_argument("--policies", nargs="+", default=["fifo", "reservoir"], choices=["fifo", "reservoir"])
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time (each gets cores / jobs threads)")
    add_common_args(p, "set", "work_dir", "results_dir", "smoke", work_dir="runs/memory_cap")
    args = p.parse_args(argv)
    command = command_line(argv, __file__)
    overrides = list(args.set)
    if args.smoke:
        args.caps, overrides = [48, 0], overrides + [
            "teacher.arch=resnet20", "synthesis.batch_size=24", "synthesis.num_generator_steps=1",
            "distill.steps_per_epoch=2", "run.epochs=4", "eval.every_epochs=10", "synthesis.generator_width=8"]
    threads = [f"run.cpu_threads={max(1, (os.cpu_count() or 1) // args.jobs)}"]
    runs = [(cap, policy) for cap in args.caps for policy in (args.policies if cap else ["fifo"])]
    work = Path(args.work_dir) / ("smoke" if args.smoke else "")

    def run_dir(cap: int, policy: str) -> Path:
        return work / (f"cap{cap}-{policy}" if cap else "unbounded")

    def launch(run: tuple[int, str]) -> None:
        cap, policy = run
        cmd = [sys.executable, str(ROOT / "launch" / "distill.py"), "preset=fashion_mnist", f"run.run_dir={run_dir(cap, policy)}",
               "run.resume=true", "run.progress=false", f"memory.max_images={cap}", f"memory.retirement={policy}",
               *threads, *overrides]
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                       stdout=subprocess.DEVNULL if args.jobs > 1 else None)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(launch, runs))
    rows = []
    for cap, policy in runs:
        summary = json.loads((run_dir(cap, policy) / "summary.json").read_text())
        rows.append({"max_images": cap or "all", "retirement": policy if cap else "-",
                     "memory_size_end": summary["memory_size"], "student_top1": round(100 * summary["student_top1"], 2),
                     "teacher_top1": round(100 * summary["teacher_top1"], 2), "wall_s": round(summary["wall_s"]),
                     "overrides": " ".join(overrides)})
    out = results_dir(args, "memory_cap") / ("memory_cap_smoke.csv" if args.smoke else "memory_cap_fashion_mnist.csv")
    if out.exists():
        out.unlink()
    write_csv(out, rows, command=command)
    md = report.write_report(out, plots=False)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
