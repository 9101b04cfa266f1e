"""Command-line front of the launch scripts: a preset plus ``section.key=value`` overrides.

    accelerate launch launch/fashion_mnist.py run.epochs=30 synthesis.num_generator_steps=20
"""

from __future__ import annotations

import sys

from .config import NayerConfig, apply_overrides, get_preset

__all__ = ["build_config", "main", "resolve_run_dir", "run_and_exit"]


def build_config(default_preset: str, args: list[str]) -> NayerConfig:
    """The validated config of ``args``: ``preset=<name>`` (default ``default_preset``) plus
    ``section.key=value`` overrides. Raises ConfigError for an unknown preset or a bad override."""
    args = list(args)
    preset = default_preset
    for item in list(args):
        if item.startswith("preset="):
            preset = item.split("=", 1)[1]
            args.remove(item)
    return apply_overrides(get_preset(preset), args).validate()


def resolve_run_dir(args: list[str], default_preset: str = "imagenet_r50") -> str:
    """The run folder that ``args`` would use (for job scripts that check for summary.json)."""
    return build_config(default_preset, args).run.run_dir


def main(default_preset: str, argv: list[str] | None = None) -> dict:
    """Build the preset's config, apply overrides (``preset=<name>`` picks another preset), run
    NAYER and print where the outputs are. Returns the run summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    config = build_config(default_preset, args)
    from .trainer import NayerTrainer  # heavy imports after the cheap argument checks

    trainer = NayerTrainer(config)
    summary = trainer.fit()
    if summary.get("preempted"):  # SIGTERM / SIGUSR1: checkpointed at a safe point, exit cleanly
        return summary
    if trainer.accelerator.is_main_process:
        run_dir = trainer.run_dir
        top1 = summary["student_top1"]
        print(f"teacher top-1 {summary['teacher_top1']}, student top-1 {top1}, teacher-student agreement on "
              f"held-out synthetic images {summary['student_agreement']:.4f}, wall {summary['wall_s']:.0f} s")
        print(f"student weights: {run_dir / 'student.safetensors'}")
        print(f"sample grids:    {run_dir / 'samples'}/epoch-*.png")
        print(f"metrics:         {run_dir / 'metrics.jsonl'} and {run_dir / 'summary.json'}")
    return summary


def run_and_exit(default_preset: str) -> None:
    """``main`` for launch scripts, then a deterministic exit: every output file is written and
    closed by then; tearing down the process group and leaving with ``os._exit(0)`` avoids the
    sporadic "terminate called without an active exception" abort of gloo / DeepSpeed threads at
    interpreter shutdown, which would turn a finished run into a non-zero exit code."""
    import os

    import torch.distributed as dist

    main(default_preset)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
