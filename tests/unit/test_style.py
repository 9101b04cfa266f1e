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
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 300
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


# No import cycles (docs/development.md): the modules' import-time imports form a DAG. Imports under
# ``if TYPE_CHECKING:`` and inside functions are not import-time; ``from . import x`` imports the
# module ``x``; ``from .m import name`` the module ``m`` (or ``m.name`` where that is a module).
PACKAGES = {"nayer_scale": "nayer_scale", "benchmarks": "benchmarks", "kernels": "nayer_kernels"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _import_time_nodes(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from _import_time_nodes(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _import_time_nodes(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _import_time_nodes(handler.body)


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _import_time_nodes(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
                targets = subs if subs and len(subs) == len(node.names) else [source, *subs]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = _import_graph()
    assert len(graph) > 100 and any(graph.values())  # the graph is really read
    assert not _cycles(graph), "modules importing each other at import time: " + str(_cycles(graph))
