"""What every benchmark script shares: its common arguments, the command that reproduces a run,
the provenance of a result (device, library versions, commit, precision, command, time) and a CSV
writer that puts that provenance on every row.

The benchmark scripts are modules of the package ``benchmarks``, run from the repository root as
``python -m benchmarks.<script>`` (the package itself comes from ``pip install -e .``);
``python -m benchmarks.report X.csv`` turns a results CSV into its markdown table (and plot).

No torch at import time: the GPU suite's orchestrating process (``python -m benchmarks.gpu_suite``)
imports this module and never touches the GPU; torch and nayer_scale are imported where a device
is described.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = [
    "PROVENANCE_KEYS",
    "RESULTS",
    "ROOT",
    "add_common_args",
    "command_line",
    "device_name",
    "git_commit",
    "package_version",
    "precision_label",
    "provenance",
    "results_dir",
    "write_csv",
]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
# The columns write_csv adds to every row (a row's own value of one of them wins).
PROVENANCE_KEYS = (
    "device",
    "torch",
    "triton",
    "accelerate",
    "deepspeed",
    "python",
    "commit",
    "precision",
    "command",
    "timestamp",
)
VERSIONED = ("torch", "triton", "accelerate", "deepspeed")


def add_common_args(
    parser: argparse.ArgumentParser,
    *names: str,
    work_dir: str | None = None,
    smoke_help: str = "tiny sizes: checks the script, measures nothing",
) -> argparse.ArgumentParser:
    """Add the arguments the benchmark scripts share; ``names`` picks them (in this order):

    - ``"set"``: ``--set SECTION.KEY=VALUE`` (repeatable) config overrides, into ``args.set`` (list);
    - ``"launcher"``: ``--launcher {accelerate,python}`` (default accelerate) for the runs;
    - ``"work_dir"``: ``--work-dir`` where the runs live (default ``work_dir``, which is then required);
    - ``"results_dir"``: ``--results-dir`` (default None: see ``results_dir``);
    - ``"smoke"``: ``--smoke``, tiny sizes that check the script (``smoke_help`` says what it does).

    Returns ``parser``. Raises ValueError for an unknown name or ``"work_dir"`` without a default."""
    unknown = set(names) - {"set", "launcher", "work_dir", "results_dir", "smoke"}
    if unknown:
        raise ValueError(f"add_common_args: unknown argument(s) {sorted(unknown)}")
    if "set" in names:
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="config override for every run or condition (repeatable), e.g. --set teacher.weights=/ckpt.pth",
        )
    if "launcher" in names:
        parser.add_argument(
            "--launcher",
            choices=("accelerate", "python"),
            default="accelerate",
            help="how each run is started: `accelerate launch` or plain python (one process)",
        )
    if "work_dir" in names:
        if work_dir is None:
            raise ValueError("add_common_args: 'work_dir' needs its default folder (work_dir=...)")
        parser.add_argument("--work-dir", default=work_dir, help="where the runs live (resumed or reused when present)")
    if "results_dir" in names:
        parser.add_argument(
            "--results-dir",
            type=Path,
            default=None,
            help="where the CSV and markdown go (default benchmarks/results; with --smoke a temporary folder)",
        )
    if "smoke" in names:
        parser.add_argument("--smoke", action="store_true", help=smoke_help)
    return parser


def results_dir(args: argparse.Namespace, name: str) -> Path:
    """The folder ``args.results_dir`` (created), else a new temporary folder with ``--smoke`` (a smoke
    run never writes into the committed results), else benchmarks/results."""
    if getattr(args, "results_dir", None):
        folder = Path(args.results_dir)
    elif getattr(args, "smoke", False):
        folder = Path(tempfile.mkdtemp(prefix=f"{name}_smoke_"))
    else:
        folder = RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def command_line(argv: list[str] | None = None, script: str | os.PathLike | None = None) -> str:
    """The command that reproduces this run from the repository root, e.g.
    ``python -m benchmarks.gpu_hours --runs nayer:10``: ``script`` (default ``sys.argv[0]``) as the
    module it is when it lies in the ``benchmarks`` package (``benchmarks/gpu_suite/__main__.py``
    -> ``-m benchmarks.gpu_suite``), else relative to the root when it lies inside it, then ``argv``
    (default ``sys.argv[1:]``), shell-quoted."""
    script = sys.argv[0] if script is None else script
    argv = sys.argv[1:] if argv is None else argv
    if str(script) in ("", "-c", "-m"):
        return shlex.join(["python", str(script), *map(str, argv)])
    path = Path(script).resolve()
    try:
        relative = path.relative_to(ROOT)
    except ValueError:
        return shlex.join(["python", str(path), *map(str, argv)])
    parts = list(relative.with_suffix("").parts)
    if parts[0] == "benchmarks" and relative.suffix == ".py":
        parts = parts[:-1] if parts[-1] == "__main__" else parts
        return shlex.join(["python", "-m", ".".join(parts), *map(str, argv)])
    return shlex.join(["python", str(relative), *map(str, argv)])


def package_version(dist: str) -> str | None:
    """Installed version of distribution ``dist`` (read from its metadata, never imported), or None."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_commit(cwd: str | os.PathLike = ROOT) -> str:
    """HEAD commit of the checkout at ``cwd``, suffixed '+dirty' when tracked files differ from it;
    'unknown' without git or a repository (e.g. on a GPU machine the tree was copied to)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=cwd, capture_output=True).returncode
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def device_name() -> str:
    """The device a number was measured on: the GPU name with its driver and CUDA version, or the CPU
    model with its instruction set, native bf16 flags (amx_bf16 / avx512_bf16), visible cores and
    torch threads (and the Triton interpreter when TRITON_INTERPRET=1), e.g.
    ``"AMD EPYC (AVX2; native bf16: none; 2 cores, 2 torch threads)"``."""
    import torch

    from nayer_scale.precision import describe_device

    if torch.cuda.is_available():
        return f"{describe_device('cuda')} (driver {_nvidia_driver() or 'unknown'}, CUDA {torch.version.cuda})"
    interp = ", Triton interpreter" if os.environ.get("TRITON_INTERPRET") == "1" else ""
    return f"{describe_device('cpu')[:-1]}, {torch.get_num_threads()} torch threads{interp})"


def precision_label(precision) -> str | None:
    """``"bf16, channels_last True"`` from a resolved precision: a ``nayer_scale.precision.Precision``
    or its ``to_dict()`` (as in a run's summary.json); None for None."""
    if precision is None:
        return None
    p = precision if isinstance(precision, dict) else precision.to_dict()
    return f"{p['mixed_precision']}, channels_last {p['channels_last']}"


def provenance(precision: str | None = None, command: str | None = None) -> dict:
    """Where a result comes from, keyed by ``PROVENANCE_KEYS``: ``device`` (``device_name``), the
    torch / triton / accelerate / deepspeed versions (None when not installed), the Python version,
    the git ``commit`` (+dirty), ``precision`` (None where the script has none), the ``command``
    (default ``command_line()``) and a UTC ``timestamp`` (ISO 8601, seconds)."""
    record = {"device": device_name()}
    record.update({dist: package_version(dist) for dist in VERSIONED})
    record.update(
        python=platform.python_version(),
        commit=git_commit(),
        precision=precision,
        command=command or command_line(),
        timestamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return record


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_csv(
    path: str | os.PathLike,
    rows: list[dict],
    *,
    append: bool = False,
    precision: str | None = None,
    command: str | None = None,
    fields: dict | None = None,
) -> Path:
    """Write ``rows`` to the CSV ``path`` with the provenance columns on EVERY row.

    Args:
        rows: one dict per row; a row's own value of a provenance column (e.g. the commit a GPU
            machine without .git was given) wins over the measured one.
        append: add to the rows already in ``path`` instead of replacing them. When the file's header
            lacks some of the new columns, the file is rewritten with every column (earlier rows keep
            their values, blank in the new columns).
        precision, command: passed to ``provenance``; ``fields``: provenance already computed (reused).
    Returns the path written. Raises ValueError when ``rows`` is empty.
    """
    if not rows:
        raise ValueError(f"write_csv({path}): no rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = fields if fields is not None else provenance(precision, command)
    new = [{**row, **{k: v for k, v in extra.items() if k not in row}} for row in rows]
    header, old = _read_rows(path) if append and path.is_file() else ([], [])
    columns = list(header)
    for row in new:
        columns += [k for k in row if k not in columns]
    if header and columns == header:  # same columns: append in place
        with path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=columns).writerows(new)
        return path
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(old + new)
    os.replace(tmp, path)
    return path
