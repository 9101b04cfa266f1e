"""Turn a benchmark's results CSV into its markdown table (and its plot, where it has one).

    python -m benchmarks.report benchmarks/results/gpu_hours_fashion_mnist.csv   # -> .md and .png
    python -m benchmarks.report benchmarks/results/precision_cpu.csv             # -> precision_cpu.md
    python -m benchmarks.report X.csv --kind kernels --no-plots

Every benchmark script writes its rows with ``benchmarks.lib.provenance.write_csv`` (provenance on
every row: device, torch / triton / accelerate / deepspeed versions, Python, commit, precision,
command, UTC time) and then calls ``benchmarks.lib.report.write_report`` on that CSV, so a
committed CSV regenerates its markdown exactly. Each script registers its renderer in
``benchmarks.lib.report.REGISTRY``; this command imports the scripts (``SCRIPTS``) to fill it. The
kind of CSV (which script wrote it) is read from its ``command`` column, else from the file name
(``gpu_hours*``, ``ablations*``, ``precision_cpu*``, ``profile_cpu*``, ``imagenet_throughput*``,
``kernels*``, ``quantization*``, ``memory_cap*``, ``weak_scaling*``); anything else gets a plain table of its columns.
Plots need matplotlib (the ``bench`` extra): ``pip install -e ".[bench]"``. The LTE figure of
``python -m benchmarks.ablations`` is drawn by that script: it comes from the text encoders, not
from the CSV.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from benchmarks.lib.report import REGISTRY, detect_kind, render, write_report

__all__ = ["SCRIPTS", "detect_kind", "load_renderers", "main", "render", "write_report"]

# The scripts that register a renderer (importing one registers it).
SCRIPTS = (
    "gpu_hours",
    "ablations",
    "precision_cpu",
    "profile_cpu",
    "imagenet_throughput",
    "bench_kernels",
    "quantization",
    "memory_cap",
    "weak_scaling",
)


def load_renderers() -> list[str]:
    """Import every script of ``SCRIPTS`` (each registers its renderer); returns the registered kinds."""
    for name in SCRIPTS:
        importlib.import_module(f"benchmarks.{name}")
    return sorted(REGISTRY)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report CSV [CSV ...] [--kind KIND] [--no-plots]``."""
    kinds = load_renderers()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+", type=Path, help="results CSV(s); X.csv -> X.md (and X.png)")
    p.add_argument("--kind", choices=[*kinds, "generic"], help="which script's table (default: detected)")
    p.add_argument("--no-plots", action="store_true", help="markdown only")
    args = p.parse_args(argv)
    for path in args.csv:
        print(f"wrote {write_report(path, args.kind, plots=not args.no_plots)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
