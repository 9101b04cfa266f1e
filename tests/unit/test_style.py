"""The code base is formatted and linted by ruff, configured in pyproject.toml ([tool.ruff])."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(command):
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"ruff {' '.join(command)} (fix with ruff format . / ruff check --fix .):\n"
        + (done.stdout + done.stderr)[-4000:]
    )


# The size limits of the code base (docs/development.md): a function fits on a screen, a class is
# read in one sitting. Counted from the ``def`` / ``class`` line to the last line, docstrings
# included, decorators not.
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 330
SIZED = ("nayer_scale", "kernels", "benchmarks", "launch")


def _oversized() -> list[str]:
    found = []
    for folder in SIZED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES}.get(
                    type(node), MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else None
                )
                if limit and node.end_lineno - node.lineno + 1 > limit:
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}"
                    )
    return found


def test_no_function_or_class_over_the_size_limits():
    assert not _oversized(), (
        f"over {MAX_FUNCTION_LINES} lines (function) or {MAX_CLASS_LINES} (class): split along a seam\n"
        + "\n".join(_oversized())
    )
