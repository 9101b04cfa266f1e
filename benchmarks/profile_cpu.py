"""Where the Fashion-MNIST demo's time goes on this CPU: torch.profiler over NAYER generator steps
and student steps of the ``fashion_mnist`` preset, grouped into the parts a user can change.

    python benchmarks/profile_cpu.py                 # ~1 min on 2 cores; writes benchmarks/results/profile_cpu.md
    python benchmarks/profile_cpu.py --smoke         # tiny sizes: checks the script

Random-weight teacher (speed does not depend on the weights), the preset's precision and memory
format (``run.mixed_precision=auto``, ``run.channels_last=auto``), the preset's synthesis batch and
student batch. The table gives each group's share of the profiled CPU time (self time of the aten
operators, summed over the group) and the wall time per step, with the CPU model and its bf16 flags.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cpu_demo import demo_trainer  # benchmarks/cpu_demo.py
from provenance import device_name, git_commit  # benchmarks/provenance.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# operator name -> group (exact names; a trailing * matches a prefix); anything else is "other"
GROUPS = {
    "convolutions (forward)": ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::thnn_conv2d"),
    "convolutions (backward)": ("aten::convolution_backward",),
    # kernels.bn_stats.batch_statistics: mean, squared deviations, closed-form backward (addcmul)
    "BN-statistics loss (batch statistics forward and backward)": ("aten::var_mean", "aten::mean", "aten::square_",
                                                                   "aten::addcmul"),
    "BatchNorm layers": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "linear layers (noisy layer, generator input, classifier)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "activations": ("aten::clamp_min", "aten::threshold_backward", "aten::leaky_relu", "aten::leaky_relu_backward"),
    "upsampling": ("aten::upsample_nearest2d", "aten::upsample_nearest2d_backward"),
    "optimizer (Adam / SGD)": ("aten::addcdiv_", "aten::addcmul_", "aten::lerp_", "aten::sqrt", "aten::_foreach*"),
}


def grouped(prof) -> dict[str, float]:
    """Self CPU seconds per group."""
    out: dict[str, float] = {name: 0.0 for name in GROUPS}
    out["other"] = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        seconds = event.self_cpu_time_total / 1e6
        for group, ops in GROUPS.items():
            if any(event.key == op or (op.endswith("*") and event.key.startswith(op[:-1])) for op in ops):
                out[group] += seconds
                break
        else:
            out["other"] += seconds
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator-steps", type=int, default=4, help="generator steps profiled (one synthesis batch)")
    p.add_argument("--student-steps", type=int, default=100, help="student steps profiled")
    p.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer, epoch, student_epoch = demo_trainer(
            tmp, [f"synthesis.num_generator_steps={args.generator_steps}",
                  f"distill.steps_per_epoch={args.student_steps}"], args.smoke)
        cfg = trainer.cfg
        trainer.synthesize(epoch, 1)  # warm-up of the timed code path
        student_epoch()  # warm-up
        for phase, fn, steps, batch in (
                ("generator step", lambda: trainer.synthesize(epoch, 2), args.generator_steps, cfg.synthesis.batch_size),
                ("student step", student_epoch, args.student_steps, cfg.distill.batch_size)):
            start = time.perf_counter()
            fn()
            wall = (time.perf_counter() - start) / steps
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            groups = grouped(prof)
            total = sum(groups.values())
            rows.append((phase, batch, wall, {g: s / total for g, s in groups.items()}))
        precision = trainer.precision

    lines = ["# Where the Fashion-MNIST demo's time goes on CPU", "",
             f"Command: `python benchmarks/profile_cpu.py`; device: {device_name()}; torch {torch.__version__}; "
             f"{torch.get_num_threads()} threads; precision {precision.mixed_precision}, channels_last "
             f"{precision.channels_last}; commit {git_commit()[:12]}; {datetime.date.today().isoformat()}.", "",
             "Share of the profiled CPU time (self time of aten operators) per group, one NAYER generator step of the "
             "`fashion_mnist` preset and one student step (teacher forward + KD + SGD), random-weight teacher.", ""]
    for phase, batch, wall, shares in rows:
        lines += [f"## {phase} (batch {batch}): {wall * 1000:.0f} ms per step (unprofiled)", "",
                  "| group | share |", "|---|---|"]
        lines += [f"| {g} | {s * 100:.1f}% |" for g, s in sorted(shares.items(), key=lambda kv: -kv[1])]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.smoke:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / "profile_cpu.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
