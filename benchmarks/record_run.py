"""Record a finished run's summary as a benchmark result with its provenance.

    python benchmarks/record_run.py runs/fashion_mnist --name fashion_mnist_cpu \
        --command "accelerate launch launch/fashion_mnist.py"

Writes benchmarks/results/<name>.json: the run's summary.json and config.json (with the precision
that ran and why), the per-epoch student top-1 from metrics.jsonl, the device (CPU model, its
instruction set and native bf16 flags and core count, or the GPU name), library versions, the git
commit and, with ``--command-wall-s``, the wall time of the whole command (install included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib.metadata import version
from pathlib import Path

from provenance import device_name, git_commit  # benchmarks/provenance.py


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--name", required=True)
    p.add_argument("--command", required=True, help="the command that produced the run")
    p.add_argument("--command-wall-s", type=float, default=None,
                   help="seconds the whole command took (e.g. the README's first command from a fresh clone)")
    args = p.parse_args()
    run = Path(args.run_dir)
    commit = git_commit(os.getcwd())
    record = {
        "name": args.name,
        "command": args.command,
        "command_wall_s": args.command_wall_s,
        "commit": commit,
        "device": device_name(),
        "versions": {pkg: version(pkg) for pkg in ("torch", "accelerate", "webdataset", "sentence-transformers")},
        "python": platform.python_version(),
        "summary": json.loads((run / "summary.json").read_text()),
        "student_top1_by_epoch": {
            r["epoch"]: r["student_top1"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r.get("student_top1") is not None
        },
        "config": json.loads((run / "config.json").read_text()),
    }
    out = Path(__file__).parent / "results" / f"{args.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
