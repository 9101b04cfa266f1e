"""The launch scripts' front (nayer_scale.cli): set-up errors are one line on stderr and exit
code 2, not a traceback, unless --debug or NAYER_DEBUG=1.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_cli_args

LAUNCH = "from nayer_scale.cli import run_and_exit; run_and_exit('fashion_mnist')"


def _launch(tmp_path, *args: str, debug_env: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NAYER_DEBUG", None)
    if debug_env:
        env["NAYER_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["synthesis.bn_loss_weight=-5"], "error: synthesis.bn_loss_weight must be >= 0, got -5.0"),
        (["run.epoch=3"], "error: unknown key 'run.epoch'; run has:"),
        (["config=missing.yaml"], "error: config file missing.yaml does not exist"),
        (["preset=nope"], "error: unknown preset 'nope'"),
    ],
)
def test_config_errors_are_one_line_and_exit_code_2(tmp_path, args, expected):
    done = _launch(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


def test_trainer_set_up_errors_are_one_line(tmp_path):
    """A teacher file that does not exist fails in the trainer's construction: one line too."""
    done = _launch(
        tmp_path,
        "teacher.weights=/nonexistent/teacher.safetensors",
        "eval.dataset=none",
        f"run.run_dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "teacher" in lines[0], done.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = ["synthesis.bn_loss_weight=-5"] + (["--debug"] if how == "flag" else [])
    done = _launch(tmp_path, *args, debug_env=how == "env")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConfigError: synthesis.bn_loss_weight must be >= 0" in done.stderr


# ------------------------------------------------------------------------------------------------
# The nayer-scale command: subcommands and a --help generated from the config dataclasses


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NAYER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "nayer_scale", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_the_command_and_its_subcommands():
    import shutil

    assert shutil.which("nayer-scale"), "the console script is part of the install ([project.scripts])"
    top = _cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("distill", "export", "presets", "config"))
    presets = _cli("presets")
    assert presets.returncode == 0 and "cifar100_fast" in presets.stdout and "(from cifar100)" in presets.stdout
    help_ = _cli("distill", "--help")
    assert help_.returncode == 0 and "synthesis.nayer.generator_input=lte" in help_.stdout
    resolved = _cli("config", "preset=cifar10", "run.epochs=30", "run.warmup_epochs=5")
    assert resolved.returncode == 0 and "epochs: 30" in resolved.stdout and "arch: wrn40_2" in resolved.stdout
    explained = _cli("config", "--explain", "synthesis.bn_momentum")
    assert explained.returncode == 0 and "in [0, 1)" in explained.stdout and "value: 0.9" in explained.stdout
    unknown = _cli("config", "--explain", "synthesis.bn_momentu")
    assert unknown.returncode == 2 and "did you mean" in unknown.stderr and "Traceback" not in unknown.stderr


def test_resolved_yaml_of_config_runs_the_same_config(tmp_path):
    from nayer_scale.cli import build_config

    done = _cli("config", "preset=tiny_imagenet", "synthesis.bn_loss_weight=3")
    (tmp_path / "run.yaml").write_text(done.stdout)
    assert build_config("fashion_mnist", [f"config={tmp_path / 'run.yaml'}"]) == build_config(
        "fashion_mnist", ["preset=tiny_imagenet", "synthesis.bn_loss_weight=3"]
    )


# ------------------------------------------------------------------------------------------------
# The README's Python example, run as it is written


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    """The README's first ```python block, verbatim."""
    lines, inside = [], False
    for line in README.read_text().splitlines():
        if not inside and line.strip() == "```python":
            inside = True
        elif inside and line.strip() == "```":
            return "\n".join(lines) + "\n"
        elif inside:
            lines.append(line)
    raise AssertionError("README.md has no ```python block")


def test_the_readme_python_example_runs(tmp_path, monkeypatch, teacher_file, fake_test_split, lte_cache, one_thread):
    """The README's example runs unchanged; only the preset it asks for is shrunk to a tiny teacher and
    budget (conftest.tiny_cli_args) by wrapping get_preset, which ``from nayer_scale import`` resolves
    from nayer_scale.recipes at import time."""
    import nayer_scale.recipes
    from nayer_scale.config import apply_overrides

    code = readme_python_example()
    assert "from nayer_scale import" in code and "distill(" in code and "get_preset(" in code
    real_get_preset = nayer_scale.recipes.get_preset
    tiny = tiny_cli_args(teacher_file, fake_test_split, lte_cache, tmp_path / "tiny")
    monkeypatch.setattr(nayer_scale.recipes, "get_preset", lambda name: apply_overrides(real_get_preset(name), tiny))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102  (the README's own code)
    summary = namespace["summary"]
    run_dir = tmp_path / namespace["cfg"].run.run_dir
    assert 0.0 <= summary["student_top1"] <= 1.0 and summary["device_hours"] > 0
    assert (run_dir / "student.safetensors").is_file() and (run_dir / "summary.json").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == namespace["cfg"].run.epochs
