"""NAYER ablations and label-text studies (paper Tables 4, 6, 7) as runnable studies.

Runs each variant (a set of config switches on the same teacher) through the entry point users run
(``accelerate launch launch/distill.py preset=<setting> ...``), reads every run's metrics.jsonl and
writes:

    <out>.md          Table-4-shaped table (generator input and noisy-layer variants: epochs until
                      the synthesis CE falls below each threshold, diversity, student top-1) and a
                      Table-6/7-shaped one (prompt templates, text encoders), with the command,
                      commit and device, and the LTE nearest classes of the default pool
    <out>.csv         one row per variant with every number of the tables
    <out>_lte.png     2-D PCA projection of each LTE pool studied, with class names

    python benchmarks/ablations.py --setting fashion_mnist --epochs 10 \\
        --out benchmarks/results/ablations_fashion_mnist
    python benchmarks/ablations.py --variants lte nl_k_to_1 --epochs 4    # a subset

Definitions (nayer_scale.metrics): convergence = first epoch (counting from 0, warm-up included)
whose synthesis batches have a final-step teacher CE below the threshold (the paper's Table 4 uses
0.1); diversity = mean within-class pairwise cosine distance of the teacher's penultimate features
within each synthesis batch, averaged over the last epoch's batches; top-1 = student accuracy on
the real test split at the end.
Runs live in ``--work-dir`` and are reused when the script is run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

from gpu_hours import run_command  # benchmarks/gpu_hours.py
from provenance import ROOT, device_name, git_commit  # benchmarks/provenance.py

sys.path.insert(0, str(ROOT))
from nayer_scale.config import get_preset  # noqa: E402
from nayer_scale.lte import load_or_build_lte  # noqa: E402
from nayer_scale.metrics import convergence_epoch  # noqa: E402
from nayer_scale.trainer import resolve_class_names  # noqa: E402

# name -> (table, label, overrides). "nl_k_to_1" is NAYER itself (MiniLM, "a photo of a {name}").
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "noise": ("table4", "Z (random noise, no noisy layer)", ["synthesis.generator_input=noise", "synthesis.noisy_layer=none"]),
    "onehot": ("table4", "OH (one-hot label)", ["synthesis.generator_input=onehot", "synthesis.noisy_layer=none"]),
    "lte": ("table4", "LTE", ["synthesis.generator_input=lte", "synthesis.noisy_layer=none"]),
    "lte_cat_noise": ("table4", "concat(LTE, Z)", ["synthesis.generator_input=lte_cat_noise", "synthesis.noisy_layer=none"]),
    "lte_plus_noise": ("table4", "LTE + 0.5 Z", ["synthesis.generator_input=lte_plus_noise", "synthesis.noise_beta=0.5",
                                                 "synthesis.noisy_layer=none"]),
    "nl_no_reinit": ("table4", "NL without re-initialisation", ["synthesis.noisy_layer_reinit=false"]),
    "nl_one_to_one": ("table4", "NL 1-to-1", ["synthesis.noisy_layer=one_to_one"]),
    "nl_k_to_1": ("table4", "NL K-to-1 (NAYER)", []),
    "nl_no_bn": ("table4", "NL K-to-1 without BatchNorm", ["synthesis.noisy_layer_batchnorm=false"]),
    "template_class_of": ("table67", "MiniLM, \"a class of a {name}\"", ["lte.template=class_of"]),
    "template_photo_index": ("table67", "MiniLM, \"a photo of a {index}\"", ["lte.template=photo_index"]),
    "encoder_hashed": ("table67", "hashed bag of words, \"a photo of a {name}\"", ["lte.encoder=hashed"]),
    "encoder_hashed_index": ("table67", "hashed bag of words, \"a photo of a {index}\"",
                             ["lte.encoder=hashed", "lte.template=photo_index"]),
}
DEFAULT = "nl_k_to_1"


def summarise(run_dir: Path, thresholds: list[float]) -> dict:
    """Numbers of one finished run: convergence epochs per threshold, min CE, diversity, top-1."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {f"epochs_to_ce_below_{t:g}": convergence_epoch(records, t) for t in thresholds}
    row.update({"min_synth_ce": min(r["synth_ce_min"] for r in records),
                "final_synth_ce": records[-1]["synth_ce_min"],
                "diversity": records[-1]["synth_diversity"],
                "student_top1": summary["student_top1"], "teacher_top1": summary["teacher_top1"],
                "wall_s": summary["wall_s"]})
    return row


def lte_figure(path: Path, setting: str, lte_cache: str) -> None:
    """One panel per studied (encoder, template) pool: PCA to 2-D, class names as labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    names = resolve_class_names(get_preset(setting).teacher.class_names)
    pools = [("minilm", "photo_of"), ("minilm", "class_of"), ("minilm", "photo_index"),
             ("hashed", "photo_of"), ("hashed", "photo_index")]
    fig, axes = plt.subplots(1, len(pools), figsize=(4.2 * len(pools), 4.2))
    for ax, (encoder, template) in zip(axes, pools):
        lte = load_or_build_lte(names, encoder, template, os.path.expanduser(lte_cache))
        centred = lte - lte.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        xy = (centred @ v[:2].T).numpy()
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
        for (x, y), name in zip(xy, names):
            ax.annotate(name, (x, y), fontsize=7)
        ax.set_title(f"{encoder}, {template}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Label-text embedding pools of {setting} (PCA, first two components)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v) -> str:
    if v is None:
        return "never"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_tables(out: Path, setting: str, epochs: int, rows: dict[str, dict], thresholds: list[float],
                 command: str, neighbours: dict | None) -> None:
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        fields = ["variant", "table", "label", *next(iter(rows.values())).keys()]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for name, row in rows.items():
            writer.writerow({"variant": name, "table": VARIANTS[name][0], "label": VARIANTS[name][1], **row})
    conv_cols = [f"Epochs to CE < {t:g}" for t in thresholds]
    head = ["| Variant | " + " | ".join(conv_cols) + " | Min synthesis CE | Diversity | Student top-1 (%) |",
            "|---|" + "---|" * (len(thresholds) + 3)]

    def line(name: str) -> str:
        r = rows[name]
        conv = " | ".join(_fmt(r[f"epochs_to_ce_below_{t:g}"]) for t in thresholds)
        return (f"| {VARIANTS[name][1]} | {conv} | {r['min_synth_ce']:.3f} | {r['diversity']:.4f} | "
                f"{100 * r['student_top1']:.2f} |")

    t4 = [n for n in VARIANTS if n in rows and VARIANTS[n][0] == "table4"]
    t67 = ([DEFAULT] if DEFAULT in rows else []) + [n for n in VARIANTS if n in rows and VARIANTS[n][0] == "table67"]
    teacher = next(iter(rows.values()))["teacher_top1"]
    md = [f"# NAYER ablations on {setting} ({epochs} epochs each)", "",
          f"Command: `{command}`", "",
          f"Commit {git_commit()}; device: {device_name()}; torch {version('torch')}. "
          f"Teacher top-1 {100 * teacher:.2f}%." if teacher is not None else "", "",
          "Epochs count from 0 and include the warm-up; \"never\" = not within the run. Diversity: mean "
          "within-class pairwise cosine distance of teacher penultimate features within a synthesis batch, "
          "averaged over the last epoch's batches (`nayer_scale.metrics.feature_diversity`).", ""]
    if t4:
        md += ["## Generator input and noisy layer (paper Table 4)", "", *head, *map(line, t4), ""]
    if len(t67) > 1:
        md += ["## Prompt templates and text encoders (paper Tables 6 and 7)", "", *head, *map(line, t67), "",
               "The CLIP text encoder (`lte.encoder=clip:<folder>`) is not in this table: this machine has no "
               "CLIP weights and no hub access.", ""]
    if neighbours:
        md += ["## Nearest classes in the default LTE pool (MiniLM, \"a photo of a {name}\")", "",
               "| Class | Nearest classes (cosine similarity) |", "|---|---|"]
        md += [f"| {c} | " + ", ".join(f"{n} ({s:.2f})" for n, s in nn) + " |" for c, nn in neighbours.items()]
        md.append("")
    md.append(f"Per-variant numbers: `{out.with_suffix('.csv').name}`; LTE pools: `{out.name}_lte.png`.")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="fashion_mnist")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                   help=f"subset of: {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ce-thresholds", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--out", default="benchmarks/results/ablations_fashion_mnist")
    p.add_argument("--work-dir", default="runs/ablations")
    p.add_argument("--launcher", choices=("accelerate", "python"), default="accelerate")
    p.add_argument("--jobs", type=int, default=1, help="variants run at the same time")
    p.add_argument("--lte-cache", default="~/.cache/nayer-scale/lte", help="LTE cache used for the figure")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override for every run (repeatable)")
    args = p.parse_args(argv)
    command = "python benchmarks/ablations.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run_dirs = {name: Path(args.work_dir) / args.setting / f"{name}-e{args.epochs}" for name in args.variants}
    # With --jobs N, N runs share the machine, each with its share of the cores (the study's
    # numbers are epochs, diversity and accuracy, not seconds; wall_s in the CSV is then not comparable).
    threads = [f"run.cpu_threads={max(1, (os.cpu_count() or 1) // args.jobs)}"] if args.jobs > 1 else []

    def launch(name: str) -> None:
        cmd = run_command(args.setting, "nayer", args.epochs, run_dirs[name], 1, args.launcher,
                          [*VARIANTS[name][2], *threads, *args.set])
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                       stdout=subprocess.DEVNULL if args.jobs > 1 else None)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(launch, args.variants))  # re-raises the first failure
    rows = {name: summarise(run_dirs[name], args.ce_thresholds) for name in args.variants}
    neighbours_file = run_dirs.get(DEFAULT, Path("/nonexistent")) / "lte_neighbours.json"
    neighbours = json.loads(neighbours_file.read_text()) if neighbours_file.is_file() else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_tables(out, args.setting, args.epochs, rows, args.ce_thresholds, command, neighbours)
    lte_cache = next((s.split("=", 1)[1] for s in args.set if s.startswith("lte.cache_dir=")), args.lte_cache)
    lte_figure(out.parent / f"{out.name}_lte.png", args.setting, lte_cache)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
