"""From a benchmark's results CSV to its markdown (and plot): the table helpers every renderer
uses and the renderer registry.

A script registers the renderer of its CSV where it defines it::

    from benchmarks.lib.report import register, table, provenance_lines

    @register("gpu_hours", plot=plot_gpu_hours)
    def render_gpu_hours(rows: list[dict], name: str) -> str: ...

so this module imports no script (no import cycle): the registry holds the renderers of the
scripts imported so far. A script calls ``write_report`` on the CSV it wrote (its own renderer is
registered by then); ``python -m benchmarks.report X.csv`` imports every script first
(``benchmarks/report.py``). Rows are dicts of strings as ``csv.DictReader`` gives them; the
provenance columns are ``benchmarks.lib.provenance.PROVENANCE_KEYS``. No torch, no matplotlib at
import time (plots import matplotlib, the ``bench`` extra, when drawn).
"""

from __future__ import annotations

import csv
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.lib.provenance import PROVENANCE_KEYS

__all__ = [
    "REGISTRY",
    "Renderer",
    "blank",
    "date_of",
    "detect_kind",
    "fixed",
    "provenance_lines",
    "read_rows",
    "register",
    "render",
    "render_generic",
    "short_commit",
    "table",
    "write_report",
]

Render = Callable[[list[dict], str], str]  # (CSV rows, file stem) -> markdown
Plot = Callable[[list[dict], Path], None]  # (CSV rows, .png path) -> None


@dataclass(frozen=True)
class Renderer:
    """The markdown renderer of one kind of results CSV, its optional plot, and the script names
    (as in a row's ``command`` column) that write that kind besides the kind's own name."""

    render: Render
    plot: Plot | None = None
    scripts: tuple[str, ...] = ()


REGISTRY: dict[str, Renderer] = {}


def register(kind: str, plot: Plot | None = None, scripts: tuple[str, ...] = ()) -> Callable[[Render], Render]:
    """Decorator: register the decorated ``render(rows, name) -> str`` as the renderer of ``kind``
    (with its ``plot(rows, png_path)``, and the script names that write it when they differ from
    ``kind``, e.g. ``scripts=("bench_kernels",)`` for "kernels"). Returns the function unchanged.

    Raises:
        ValueError: another function is already registered for ``kind``."""

    def decorate(fn: Render) -> Render:
        old = REGISTRY.get(kind)
        if old is not None and (old.render.__module__, old.render.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"report kind {kind!r} is registered twice ({old.render.__module__}, {fn.__module__})")
        REGISTRY[kind] = Renderer(fn, plot, tuple(scripts))
        return fn

    return decorate


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def blank(value) -> bool:
    """Whether a CSV cell is empty (None or "")."""
    return value is None or value == ""


def fixed(value, digits: int) -> str:
    """A number with ``digits`` decimals; '-' when blank."""
    return "-" if blank(value) else f"{float(value):.{digits}f}"


def short_commit(value) -> str:
    """A commit shortened to 12 hex digits, keeping '+dirty'."""
    value = str(value or "")
    return value[:12] + ("+dirty" if value.endswith("+dirty") else "")


def date_of(row: dict) -> str:
    """A row's ``date``, else the day of its ``timestamp`` (YYYY-MM-DD)."""
    return row.get("date") or (row.get("timestamp") or "")[:10]


def provenance_lines(rows: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    """One bullet per provenance column present in ``rows`` (except ``skip``), with its distinct
    values in row order (the first four, then how many there are); a blank line after them."""
    lines = []
    for key in (*PROVENANCE_KEYS, "date"):
        if key in skip:
            continue
        values = list(dict.fromkeys(str(r[key]) for r in rows if not blank(r.get(key))))
        if not values:
            continue
        shown = [f"`{v}`" if key in ("command", "commit") else v for v in values[:4]]
        more = f" ({len(values)} values in all; see the CSV)" if len(values) > 4 else ""
        lines.append(f"- {key}: {'; '.join(shown)}{more}")
    return lines + [""] if lines else []


def table(
    header: list[str], rows: list[list], align: list[str] | None = None, cell: Callable[[object], str] = str
) -> list[str]:
    """Markdown table lines; ``align``: one separator per column ("---", "---:"), default "---";
    ``cell`` turns each value into its text (default ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(f"{a}|" for a in align or ["---"] * len(header))]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]


def render_generic(rows: list[dict], name: str) -> str:
    """A plain table of every column (CSVs of a kind nobody registered)."""
    columns = list(rows[0]) if rows else []
    return "\n".join([f"# {name}", "", *table(columns, [[r.get(c, "") for c in columns] for r in rows])]) + "\n"


# ------------------------------------------------------------------------------------------------
# Kinds, rendering
# ------------------------------------------------------------------------------------------------


def _script_of(command: str) -> str | None:
    """The script's name in a recorded command: ``python -m benchmarks.gpu_hours ...`` and the
    older ``python benchmarks/gpu_hours.py ...`` both give "gpu_hours"."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    if len(words) > 2 and words[1] == "-m":
        return words[2].split(".")[-1]
    return Path(words[1]).stem if len(words) > 1 else None


def _kind_of_script(script: str | None) -> str | None:
    for kind, renderer in REGISTRY.items():
        if script == kind or script in renderer.scripts:
            return kind
    return None


def detect_kind(path: str | os.PathLike, rows: list[dict]) -> str:
    """The kind of a results CSV among the registered ones: the script in its ``command`` column,
    else the file name's prefix, else "generic"."""
    kind = _kind_of_script(_script_of(rows[0].get("command") or "")) if rows else None
    if kind:
        return kind
    stem = Path(path).stem
    return next((k for k in REGISTRY if stem.startswith(k)), "generic")


def _renderer(kind: str) -> Renderer:
    if kind == "generic":
        return Renderer(render_generic)
    if kind not in REGISTRY:
        raise ValueError(f"no renderer registered for {kind!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[kind]


def _rows(csv_path: str | os.PathLike) -> list[dict]:
    rows = read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows")
    return rows


def render(csv_path: str | os.PathLike, kind: str | None = None) -> str:
    """The markdown of ``csv_path`` (``kind``: a registered kind or "generic", default
    ``detect_kind``). Raises ValueError for a CSV without rows or an unregistered kind."""
    rows = _rows(csv_path)
    return _renderer(kind or detect_kind(csv_path, rows)).render(rows, Path(csv_path).stem)


def write_report(csv_path: str | os.PathLike, kind: str | None = None, plots: bool = True) -> Path:
    """Write ``X.md`` next to ``X.csv`` (and ``X.png`` where the kind has a plot and matplotlib is
    installed; without it a note is printed). Returns the markdown's path. Raises as ``render``."""
    csv_path = Path(csv_path)
    rows = _rows(csv_path)
    renderer = _renderer(kind or detect_kind(csv_path, rows))
    md_path = csv_path.with_suffix(".md")
    md_path.write_text(renderer.render(rows, csv_path.stem))
    if plots and renderer.plot is not None:
        try:
            renderer.plot(rows, csv_path.with_suffix(".png"))
        except ImportError as err:
            print(f'report: no plot for {csv_path.name} ({err}): pip install -e ".[bench]"')
    return md_path
