"""The ``nayer-scale`` command (also ``python -m nayer_scale`` and ``accelerate launch -m nayer_scale``).

    nayer-scale distill [preset=NAME] [config=FILE.yaml] [section.key=value ...] [--debug]
    nayer-scale export RUN_DIR --format hf OUT [...]
    nayer-scale presets
    nayer-scale config [preset=NAME] [config=FILE.yaml] [section.key=value ...] [--explain KEY]
    nayer-scale [COMMAND] --help

A config is built in layers: the preset (``preset=<name>``, else the YAML file's ``preset:`` key,
else the default one), the YAML file (``config=<file.yaml>``, as ``NayerConfig.to_yaml()`` writes
it), then ``section.key=value`` overrides. ``distill --help`` lists every field with its type,
default, choices or range and meaning (``nayer_scale.config.reference``). The launch scripts
(``launch/*.py``) are this command's ``distill`` with their own default preset.

A bad value, a missing file, a missing optional package, an unusable teacher or a run folder held by
another job is reported as one line ``error: ...`` on stderr with exit code 2, before any work; so
is a full disk during a run (the run resumes with the same command once space is freed).
``--debug`` (or ``NAYER_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import typing
import warnings

from .config import ConfigError, NayerConfig
from .config.reference import explain, reference_text
from .extras import MissingExtraError
from .recipes import PRESETS, compose_config, get_preset, preset_parents

__all__ = ["build_config", "distill_help", "entry", "main", "presets_text", "resolve_run_dir", "run_and_exit"]

DEFAULT_PRESET = "fashion_mnist"
COMMANDS = ("distill", "export", "presets", "config")
# Errors that are the user's to fix, reported as one line. ValueError covers nayer_scale.models.io.TeacherLoadError
# (a subclass) and OSError covers a full disk (storage.DiskFullError), kept out of the imports here:
# they would pull in torch before the cheap argument checks.
_USER_ERRORS = (ConfigError, FileNotFoundError, ValueError, MissingExtraError)


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
    return compose_config(
        default_preset, preset_name=preset, config_file=config_files[0] if config_files else None, overrides=overrides
    )


def resolve_run_dir(args: list[str], default_preset: str = "imagenet_r50") -> str:
    """The run folder that ``args`` would use (for job scripts that check for summary.json)."""
    return build_config(default_preset, args).run.run_dir


def presets_text() -> str:
    """One line per preset: name, the preset it derives from, the first line of its docstring."""
    parents, lines = preset_parents(), []
    width = max(map(len, PRESETS))
    for name, builder in PRESETS.items():
        text = " ".join((builder.__doc__ or "").split())
        cut = [i for i in (text.find(". "), text.find(": ")) if i > 0]
        doc = text[: min(cut)] if cut else text.rstrip(".")
        parent = f"(from {parents[name]}) " if parents.get(name) else ""
        lines.append(f"  {name:<{width}}  {parent}{doc}")
    return "\n".join(lines)


def distill_help(default_preset: str = DEFAULT_PRESET, args: typing.Sequence[str] = ()) -> str:
    """``nayer-scale distill --help``: usage, launch lines, the presets and every config field with
    its value in the preset named in ``args`` (``preset=...``), else in ``default_preset``."""
    name = next((a.split("=", 1)[1] for a in args if a.startswith("preset=")), default_preset)
    cfg = get_preset(name) if name in PRESETS else get_preset(default_preset)
    return "\n".join(
        [
            "usage: nayer-scale distill [preset=NAME] [config=FILE.yaml] [section.key=value ...] [--debug]",
            "",
            "Data-free knowledge distillation with NAYER (or the DeepInversion / Fast baselines): synthesise images "
            "from the",
            "teacher, keep them in a sharded memory bank, train the student on them; evaluate on a real test split "
            "if one is set.",
            "",
            "  accelerate launch -m nayer_scale distill preset=cifar10 teacher.weights=wrn40_2.pth   # one GPU or CPU",
            "  accelerate launch --multi_gpu --num_processes 8 -m nayer_scale distill preset=imagenet_r50",
            "  nayer-scale distill config=run.yaml run.epochs=40                                       # one process",
            "",
            "The launcher's own flags are honoured: --mixed_precision (with run.mixed_precision=auto), "
            "--dynamo_backend, --use_deepspeed.",
            "",
            "presets:",
            presets_text(),
            "",
            f"config fields (section.key=default in preset {name}, [type; choices or range]):",
            reference_text(cfg),
        ]
    )


def _overview() -> str:
    return "\n".join(
        [
            "usage: nayer-scale COMMAND [ARGS]      (also: python -m nayer_scale, accelerate launch -m nayer_scale)",
            "",
            "commands:",
            "  distill   distill a teacher into a student without its data (any preset; see distill --help)",
            "  export    publish a finished run: the synthetic set and the student, with hub cards (export --help)",
            "  presets   list the presets: name, parent, one line each",
            "  config    print the resolved config of [preset=...] [config=...] [overrides] as YAML; --explain KEY",
            "",
            "Run `nayer-scale COMMAND --help` for a command's options.",
        ]
    )


def _config_command(default_preset: str, args: list[str]) -> None:
    if args and args[0] in ("-h", "--help"):
        print(
            "usage: nayer-scale config [preset=NAME] [config=FILE.yaml] [section.key=value ...] [--explain KEY]\n\n"
            "Print the resolved config as YAML (what `distill` with the same arguments would run), or explain one "
            "field."
        )
        return
    if "--explain" in args:
        at = args.index("--explain")
        if at + 1 >= len(args):
            raise ConfigError("--explain takes a field, e.g. --explain synthesis.bn_loss_weight")
        key, rest = args[at + 1], args[:at] + args[at + 2 :]
        try:
            print(explain(key, build_config(default_preset, rest)))
        except KeyError as err:
            raise ConfigError(err.args[0]) from None
        return
    print(build_config(default_preset, args).to_yaml(), end="")


def _export_command(args: list[str]) -> None:
    from .export import main as export_main  # torch and datasets only when exporting

    code = export_main(args)
    if code:
        raise SystemExit(code)


def _distill(default_preset: str, args: list[str]) -> dict:
    if args and args[0] in ("-h", "--help"):
        print(distill_help(default_preset, args[1:]))
        raise SystemExit(0)
    config = build_config(default_preset, args)
    from .trainer import NayerTrainer  # heavy imports after the cheap argument checks

    trainer = NayerTrainer(config)
    summary = trainer.fit()
    if summary.get("preempted") or not trainer.accelerator.is_main_process:
        return summary  # SIGTERM / SIGUSR1: checkpointed at a safe point, exit cleanly
    run_dir, top1 = trainer.run_dir, summary["student_top1"]
    print(
        f"teacher top-1 {summary['teacher_top1']}, student top-1 {top1}, teacher-student agreement on "
        f"held-out synthetic images {summary['student_agreement']:.4f}, wall {summary['wall_s']:.0f} s"
    )
    print(f"student weights: {run_dir / 'student.safetensors'}")
    print(f"sample grids:    {run_dir / 'samples'}/epoch-*.png")
    print(f"metrics:         {run_dir / 'metrics.jsonl'} and {run_dir / 'summary.json'}")
    return summary


@contextlib.contextmanager
def _reported_as_one_line(debug: bool) -> typing.Iterator[None]:
    """Turn a user's error into ``error: <message>`` on stderr and SystemExit(2); re-raise it
    unchanged when ``debug``. A full disk (``storage.DiskFullError``) is one too."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - filtered right below
        from .storage import DiskFullError

        if debug or not isinstance(err, (*_USER_ERRORS, DiskFullError)):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}  (--debug or NAYER_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def main(
    default_preset: str = DEFAULT_PRESET, argv: list[str] | None = None, *, command: str | None = None
) -> dict | None:
    """Run one command of ``argv`` (default ``sys.argv[1:]``). ``command`` fixes it (the launch
    scripts pass "distill"); otherwise the first argument names it, and arguments that start with
    none of the commands run ``distill`` (as the launch scripts always did). Returns the run summary
    for ``distill``, else None.

    Errors the user must fix (config, files, a missing extra, the teacher, a busy run folder, a full
    disk) print one line on stderr and raise SystemExit(2), unless ``--debug`` is among the
    arguments or ``NAYER_DEBUG=1`` is set."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NAYER_DEBUG", "") == "1"
    args = [a for a in args if a != "--debug"]
    if command is None:
        if not args or args[0] in ("-h", "--help"):
            print(_overview())
            raise SystemExit(0)
        command = args.pop(0) if args[0] in COMMANDS else "distill"
    # Python hides DeprecationWarnings outside __main__: show the renamed config keys to the user.
    warnings.filterwarnings("default", category=DeprecationWarning, message=r"\S+ is deprecated")
    with _reported_as_one_line(debug):
        if command == "distill":
            return _distill(default_preset, args)
        if command == "presets":
            print(presets_text())
        elif command == "config":
            _config_command(default_preset, args)
        elif command == "export":
            _export_command(args)
        else:
            raise ConfigError(f"unknown command {command!r}: use one of {', '.join(COMMANDS)}")
    return None


def run_and_exit(
    default_preset: str = DEFAULT_PRESET, *, command: str | None = None, argv: list[str] | None = None
) -> None:
    """``main``, then a deterministic exit: every output file is written and closed by then;
    tearing down the process group and leaving with ``os._exit`` avoids the sporadic "terminate
    called without an active exception" abort of gloo / DeepSpeed threads at interpreter shutdown,
    which would turn a finished run into a non-zero exit code. An error already reported on stderr
    leaves the same way, with exit code 2."""
    code = 0
    try:
        main(default_preset, argv, command=command)
    except SystemExit as stop:  # --help (0), or an error reported as one line (2)
        if stop.code is not None and not isinstance(stop.code, int):
            raise
        code = stop.code or 0
    except BrokenPipeError:  # `nayer-scale distill --help | head`: the reader left, nothing is lost
        code = 0
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def entry() -> None:
    """The ``nayer-scale`` console script."""
    run_and_exit(DEFAULT_PRESET)
