"""Provenance of a benchmark row: the device and the git commit it was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["device_name", "git_commit"]


def device_name() -> str:
    """GPU name, or the CPU model with the visible core and torch thread counts (and the Triton
    interpreter when TRITON_INTERPRET=1)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    interp = ", Triton interpreter" if os.environ.get("TRITON_INTERPRET") == "1" else ""
    return f"{cpu} ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads{interp})"


def git_commit(cwd: str | os.PathLike = ROOT) -> str:
    """HEAD commit of the checkout at ``cwd``, suffixed '+dirty' when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=cwd).returncode != 0
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
