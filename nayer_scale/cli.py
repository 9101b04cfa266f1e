"""Command-line front of the launch scripts: a preset plus ``section.key=value`` overrides.

    accelerate launch launch/fashion_mnist.py run.epochs=30 synthesis.num_generator_steps=20
"""

from __future__ import annotations

import sys

from .config import apply_overrides, get_preset

__all__ = ["main"]


def main(default_preset: str, argv: list[str] | None = None) -> dict:
    """Build the preset's config, apply overrides (``preset=<name>`` picks another preset), run
    NAYER and print where the outputs are. Returns the run summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    preset = default_preset
    for item in list(args):
        if item.startswith("preset="):
            preset = item.split("=", 1)[1]
            args.remove(item)
    config = apply_overrides(get_preset(preset), args).validate()
    from .trainer import NayerTrainer  # heavy imports after the cheap argument checks

    trainer = NayerTrainer(config)
    summary = trainer.fit()
    if trainer.accelerator.is_main_process:
        run_dir = trainer.run_dir
        top1 = summary["student_top1"]
        print(f"teacher top-1 {summary['teacher_top1']}, student top-1 {top1}, wall {summary['wall_s']:.0f} s")
        print(f"student weights: {run_dir / 'student.safetensors'}")
        print(f"sample grids:    {run_dir / 'samples'}/epoch-*.png")
        print(f"metrics:         {run_dir / 'metrics.jsonl'} and {run_dir / 'summary.json'}")
    return summary
