"""Provenance of a benchmark row: the device and the git commit it was measured on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from nayer_scale.precision import describe_device  # noqa: E402

__all__ = ["device_name", "git_commit"]


def device_name() -> str:
    """GPU name, or the CPU model with its instruction set, native bf16 flags, the visible core and
    torch thread counts (and the Triton interpreter when TRITON_INTERPRET=1)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    interp = ", Triton interpreter" if os.environ.get("TRITON_INTERPRET") == "1" else ""
    return f"{describe_device('cpu')[:-1]}, {torch.get_num_threads()} torch threads{interp})"


def git_commit(cwd: str | os.PathLike = ROOT) -> str:
    """HEAD commit of the checkout at ``cwd``, suffixed '+dirty' when tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=cwd).returncode != 0
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
