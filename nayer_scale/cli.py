"""Command-line front of the launch scripts: a preset, an optional YAML file and ``section.key=value``
overrides, applied in that order.

    accelerate launch launch/fashion_mnist.py run.epochs=30 synthesis.num_generator_steps=20
    accelerate launch launch/distill.py preset=cifar10 config=run.yaml synthesis.nayer.generator_input=noise

``preset=<name>`` picks another preset (else the YAML file's ``preset:`` key, else the launch
script's); ``config=<file.yaml>`` holds sections of keys (``NayerConfig.to_yaml()`` writes one).
A bad value, a missing file or an unusable teacher is reported as one line ``error: ...`` on
stderr with exit code 2; ``--debug`` (or ``NAYER_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import typing
import warnings

from .config import ConfigError, NayerConfig
from .recipes import compose_config

__all__ = ["build_config", "main", "resolve_run_dir", "run_and_exit"]

# Errors of the set-up (config and trainer construction) that are the user's to fix. ValueError
# covers nayer_scale.models.io.TeacherLoadError (a subclass), kept out of the imports here: it would
# pull in torch before the cheap argument checks.
_SETUP_ERRORS = (ConfigError, FileNotFoundError, ValueError)


def build_config(default_preset: str, args: list[str]) -> NayerConfig:
    """The validated config of ``args``: ``preset=<name>`` (default: the YAML file's ``preset:``,
    else ``default_preset``), ``config=<file.yaml>``, then ``section.key=value`` overrides.

    Raises:
        ConfigError: an unknown preset, section or key, a bad value, two config files.
        FileNotFoundError: the config file does not exist.
    """
    preset, config_files, overrides = None, [], []
    for item in args:
        if item.startswith("preset="):
            preset = item.split("=", 1)[1]
        elif item.startswith("config="):
            config_files.append(item.split("=", 1)[1])
        else:
            overrides.append(item)
    if len(config_files) > 1:
        raise ConfigError(f"give one config=<file.yaml>, got {len(config_files)}: {', '.join(config_files)}")
    return compose_config(default_preset, preset_name=preset, config_file=config_files[0] if config_files else None,
                          overrides=overrides)


def resolve_run_dir(args: list[str], default_preset: str = "imagenet_r50") -> str:
    """The run folder that ``args`` would use (for job scripts that check for summary.json)."""
    return build_config(default_preset, args).run.run_dir


@contextlib.contextmanager
def _reported_as_one_line(debug: bool) -> typing.Iterator[None]:
    """Turn a set-up error into ``error: <message>`` on stderr and SystemExit(2); re-raise it
    unchanged when ``debug``."""
    try:
        yield
    except _SETUP_ERRORS as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}  (--debug or NAYER_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def main(default_preset: str, argv: list[str] | None = None) -> dict:
    """Build the config (``preset=<name>``, ``config=<file.yaml>``, overrides), run NAYER and print
    where the outputs are. Returns the run summary.

    Errors raised while building the config or the trainer (ConfigError, FileNotFoundError,
    ValueError, TeacherLoadError) print one line on stderr and raise SystemExit(2), unless
    ``--debug`` is among the arguments or ``NAYER_DEBUG=1`` is set."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    debug = "--debug" in args or os.environ.get("NAYER_DEBUG", "") == "1"
    args = [a for a in args if a != "--debug"]
    # Python hides DeprecationWarnings outside __main__: show the renamed config keys to the user.
    warnings.filterwarnings("default", category=DeprecationWarning, message=r"\S+ is deprecated")
    with _reported_as_one_line(debug):
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
    closed by then; tearing down the process group and leaving with ``os._exit`` avoids the
    sporadic "terminate called without an active exception" abort of gloo / DeepSpeed threads at
    interpreter shutdown, which would turn a finished run into a non-zero exit code. A set-up
    error already reported on stderr leaves the same way, with exit code 2."""
    import torch.distributed as dist

    code = 0
    try:
        main(default_preset)
    except SystemExit as stop:  # --help (0), or a set-up error reported as one line (2)
        if stop.code is not None and not isinstance(stop.code, int):
            raise
        code = stop.code or 0
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
