"""Record a finished run's summary as a benchmark result with its provenance.

    python -m benchmarks.record_run runs/fashion_mnist --name fashion_mnist_cpu \
        --command "accelerate launch launch/fashion_mnist.py"

Writes benchmarks/results/<name>.json: the run's summary.json and config.json (with the precision
that ran and why), the per-epoch student top-1 from metrics.jsonl, the device (CPU model, its
instruction set and native bf16 flags and core count, or the GPU name with its driver and CUDA
version), library versions (None where not installed), the git commit, the time it was recorded
(benchmarks/lib/provenance.py) and, with ``--command-wall-s``, the wall time of the whole command
(install included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.lib.provenance import RESULTS, package_version, provenance


def main() -> None:
    """``python -m benchmarks.record_run RUN_DIR --name NAME --command "..."``: writes
    benchmarks/results/NAME.json."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--command", required=True, help="the command that produced the run")
    p.add_argument(
        "--command-wall-s",
        type=float,
        default=None,
        help="seconds the whole command took (e.g. the README's first command from a fresh clone)",
    )
    args = p.parse_args()
    run = Path(args.run_dir)
    config, summary = json.loads((run / "config.json").read_text()), json.loads((run / "summary.json").read_text())
    ran = summary.get("precision") or {}  # the precision that ran (config.json may say "auto")
    fields = provenance(
        precision=ran.get("mixed_precision") or config.get("run", {}).get("mixed_precision"), command=args.command
    )
    versions = {pkg: fields[pkg] for pkg in ("torch", "triton", "accelerate", "deepspeed")}
    versions.update({pkg: package_version(pkg) for pkg in ("webdataset", "sentence-transformers")})
    record = {
        "name": args.name,
        "command": args.command,
        "command_wall_s": args.command_wall_s,
        "commit": fields["commit"],
        "device": fields["device"],
        "versions": versions,
        "python": fields["python"],
        "precision": fields["precision"],
        "recorded": fields["timestamp"],
        "summary": summary,
        "student_top1_by_epoch": {
            r["epoch"]: r["student_top1"]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r.get("student_top1") is not None
        },
        "config": config,
    }
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
