"""The launch scripts' front (nayer_scale.cli): set-up errors are one line on stderr and exit
code 2, not a traceback, unless --debug or NAYER_DEBUG=1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LAUNCH = "from nayer_scale.cli import run_and_exit; run_and_exit('fashion_mnist')"


def _launch(tmp_path, *args: str, debug_env: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NAYER_DEBUG", None)
    if debug_env:
        env["NAYER_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("args,expected", [
    (["synthesis.bn_loss_weight=-5"], "error: synthesis.bn_loss_weight must be >= 0, got -5.0"),
    (["run.epoch=3"], "error: unknown key 'run.epoch'; run has:"),
    (["config=missing.yaml"], "error: config file missing.yaml does not exist"),
    (["preset=nope"], "error: unknown preset 'nope'"),
])
def test_config_errors_are_one_line_and_exit_code_2(tmp_path, args, expected):
    done = _launch(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


def test_trainer_set_up_errors_are_one_line(tmp_path):
    """A teacher file that does not exist fails in the trainer's construction: one line too."""
    done = _launch(tmp_path, "teacher.weights=/nonexistent/teacher.safetensors", "eval.dataset=none",
                   f"run.run_dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stderr
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "teacher" in lines[0], done.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = ["synthesis.bn_loss_weight=-5"] + (["--debug"] if how == "flag" else [])
    done = _launch(tmp_path, *args, debug_env=how == "env")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConfigError: synthesis.bn_loss_weight must be >= 0" in done.stderr
