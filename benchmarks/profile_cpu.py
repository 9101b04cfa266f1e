"""Where the Fashion-MNIST demo's time goes on this CPU: torch.profiler over NAYER generator steps
and student steps of the ``fashion_mnist`` preset, grouped into the parts a user can change.

    python -m benchmarks.profile_cpu                 # ~1 min on 2 cores; writes benchmarks/results/profile_cpu.{csv,md}
    python -m benchmarks.profile_cpu --smoke         # tiny sizes: checks the script, prints, records nothing

Random-weight teacher (speed does not depend on the weights), the preset's precision and memory
format (``run.mixed_precision=auto``, ``run.channels_last=auto``), the preset's synthesis batch and
student batch. The table gives each group's share of the profiled CPU time (self time of the aten
operators, summed over the group) and the wall time per step, with the CPU model and its bf16 flags
(provenance columns of benchmarks/lib/provenance.py); the markdown is rendered from the CSV by
the renderer registered here (benchmarks.lib.report).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from benchmarks.cpu_demo import demo_trainer
from benchmarks.lib.provenance import add_common_args, command_line, precision_label, results_dir, write_csv
from benchmarks.lib.report import provenance_lines, register, table, write_report

# operator name -> group (exact names; a trailing * matches a prefix); anything else is "other"
GROUPS = {
    "convolutions (forward)": ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::thnn_conv2d"),
    "convolutions (backward)": ("aten::convolution_backward",),
    # kernels.bn_stats.batch_statistics: mean, squared deviations, closed-form backward (addcmul)
    "BN-statistics loss (batch statistics forward and backward)": (
        "aten::var_mean",
        "aten::mean",
        "aten::square_",
        "aten::addcmul",
    ),
    "BatchNorm layers": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "linear layers (noisy layer, generator input, classifier)": (
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::baddbmm",
    ),
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


def profile_steps(generator_steps: int, student_steps: int, smoke: bool) -> tuple[list[dict], str]:
    """Profile the demo's generator and student steps. Returns (rows, precision): one row per
    (phase, group) with the phase's batch, unprofiled ms per step and the group's share (fraction)
    of the profiled CPU time; the precision and memory format the preset resolved to."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer, epoch, student_epoch = demo_trainer(
            tmp, [f"synthesis.num_generator_steps={generator_steps}", f"distill.steps_per_epoch={student_steps}"], smoke
        )
        cfg = trainer.cfg
        trainer.synthesize(epoch, 1)  # warm-up of the timed code path
        student_epoch()  # warm-up
        for phase, fn, steps, batch in (
            ("generator step", lambda: trainer.synthesize(epoch, 2), generator_steps, cfg.synthesis.batch_size),
            ("student step", student_epoch, student_steps, cfg.distill.batch_size),
        ):
            start = time.perf_counter()
            fn()
            wall = (time.perf_counter() - start) / steps
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            groups = grouped(prof)
            total = sum(groups.values())
            rows += [
                {
                    "phase": phase,
                    "batch": batch,
                    "ms_per_step": round(wall * 1000, 3),
                    "group": g,
                    "share": round(s / total, 6),
                }
                for g, s in groups.items()
            ]
        precision = precision_label(trainer.precision)
    return rows, precision


@register("profile_cpu")
def render_profile_cpu(rows: list[dict], name: str) -> str:
    """Each profiled phase's wall time per step and its groups' shares of the profiled CPU time."""
    phases: dict[tuple, list[dict]] = {}
    for r in rows:
        phases.setdefault((r["phase"], r["batch"], r["ms_per_step"]), []).append(r)
    lines = [
        "# Where the Fashion-MNIST demo's time goes on CPU",
        "",
        *provenance_lines(rows),
        "Share of the profiled CPU time (self time of aten operators) per group, one NAYER generator step of the "
        "`fashion_mnist` preset and one student step (teacher forward + KD + SGD), random-weight teacher.",
        "",
    ]
    for (phase, batch, ms), group_rows in phases.items():
        ranked = sorted(group_rows, key=lambda r: -float(r["share"]))
        lines += [
            f"## {phase} (batch {batch}): {float(ms):.0f} ms per step (unprofiled)",
            "",
            *table(["group", "share"], [[r["group"], f"{float(r['share']) * 100:.1f}%"] for r in ranked]),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile, write profile_cpu.csv and .md (not with --smoke) and print the markdown."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator-steps", type=int, default=4, help="generator steps profiled (one synthesis batch)")
    p.add_argument("--student-steps", type=int, default=100, help="student steps profiled")
    add_common_args(p, "results_dir", "smoke", smoke_help="tiny sizes: checks the script, prints, records nothing")
    args = p.parse_args(argv)
    rows, precision = profile_steps(args.generator_steps, args.student_steps, args.smoke)
    command = command_line(argv, __file__)
    with tempfile.TemporaryDirectory() as tmp:  # --smoke: the table is printed, nothing is recorded
        folder = Path(tmp) if args.smoke else results_dir(args, "profile_cpu")
        md_path = write_report(
            write_csv(folder / "profile_cpu.csv", rows, precision=precision, command=command), kind="profile_cpu"
        )
        print(md_path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
