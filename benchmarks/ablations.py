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

    python -m benchmarks.ablations --setting fashion_mnist --epochs 10 \\
        --out benchmarks/results/ablations_fashion_mnist
    python -m benchmarks.ablations --variants lte nl_k_to_1 --epochs 4    # a subset

Definitions (nayer_scale.metrics): convergence = first epoch (counting from 0, warm-up included)
whose synthesis batches have a final-step teacher CE below the threshold (the paper's Table 4 uses
0.1); diversity = mean within-class pairwise cosine distance of the teacher's penultimate features
within each synthesis batch, averaged over the last epoch's batches; top-1 = student accuracy on
the real test split at the end.
Runs live in ``--work-dir`` and are reused when the script is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.gpu_hours import run_command
from benchmarks.lib.provenance import add_common_args, command_line, precision_label, write_csv
from benchmarks.lib.report import blank, fixed, provenance_lines, register, table, write_report

# name -> (table, label, overrides). "nl_k_to_1" is NAYER itself (MiniLM, "a photo of a {name}").
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "noise": (
        "table4",
        "Z (random noise, no noisy layer)",
        ["synthesis.nayer.generator_input=noise", "synthesis.nayer.noisy_layer=none"],
    ),
    "onehot": (
        "table4",
        "OH (one-hot label)",
        ["synthesis.nayer.generator_input=onehot", "synthesis.nayer.noisy_layer=none"],
    ),
    "lte": ("table4", "LTE", ["synthesis.nayer.generator_input=lte", "synthesis.nayer.noisy_layer=none"]),
    "lte_cat_noise": (
        "table4",
        "concat(LTE, Z)",
        ["synthesis.nayer.generator_input=lte_cat_noise", "synthesis.nayer.noisy_layer=none"],
    ),
    "lte_plus_noise": (
        "table4",
        "LTE + 0.5 Z",
        [
            "synthesis.nayer.generator_input=lte_plus_noise",
            "synthesis.nayer.noise_beta=0.5",
            "synthesis.nayer.noisy_layer=none",
        ],
    ),
    "nl_no_reinit": ("table4", "NL without re-initialisation", ["synthesis.nayer.noisy_layer_reinit=false"]),
    "nl_one_to_one": ("table4", "NL 1-to-1", ["synthesis.nayer.noisy_layer=one_to_one"]),
    "nl_k_to_1": ("table4", "NL K-to-1 (NAYER)", []),
    "nl_no_bn": ("table4", "NL K-to-1 without BatchNorm", ["synthesis.nayer.noisy_layer_batchnorm=false"]),
    "template_class_of": ("table67", 'MiniLM, "a class of a {name}"', ["lte.template=class_of"]),
    "template_photo_index": ("table67", 'MiniLM, "a photo of a {index}"', ["lte.template=photo_index"]),
    "encoder_hashed": ("table67", 'hashed bag of words, "a photo of a {name}"', ["lte.encoder=hashed"]),
    "encoder_hashed_index": (
        "table67",
        'hashed bag of words, "a photo of a {index}"',
        ["lte.encoder=hashed", "lte.template=photo_index"],
    ),
}
DEFAULT = "nl_k_to_1"
CONV = "epochs_to_ce_below_"  # column prefix of the convergence epochs


def summarise(run_dir: Path, thresholds: list[float]) -> dict:
    """Numbers of one finished run: convergence epochs per threshold, min CE, diversity, top-1."""
    from nayer_scale.metrics import convergence_epoch

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {f"{CONV}{t:g}": convergence_epoch(records, t) for t in thresholds}
    row.update(
        {
            "min_synth_ce": min(r["synth_ce_min"] for r in records),
            "final_synth_ce": records[-1]["synth_ce_min"],
            "diversity": records[-1]["synth_diversity"],
            "student_top1": summary["student_top1"],
            "teacher_top1": summary["teacher_top1"],
            "wall_s": summary["wall_s"],
            "precision": precision_label(summary.get("precision")),
        }
    )
    return row


def lte_figure(path: Path, setting: str, lte_cache: str) -> None:
    """One panel per studied (encoder, template) pool: PCA to 2-D, class names as labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from nayer_scale.lte import load_or_build_lte, resolve_class_names
    from nayer_scale.recipes import get_preset

    names = resolve_class_names(get_preset(setting).teacher.class_names)
    pools = [
        ("minilm", "photo_of"),
        ("minilm", "class_of"),
        ("minilm", "photo_index"),
        ("hashed", "photo_of"),
        ("hashed", "photo_index"),
    ]
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


def write_tables(
    out: Path, setting: str, epochs: int, rows: dict[str, dict], command: str, neighbours: dict | None
) -> None:
    """``out``.csv (one row per variant, in VARIANTS order, with the setting, epochs, the default
    pool's LTE nearest classes and the provenance columns), then ``out``.md from it
    (benchmarks.lib.report)."""
    records = [
        {
            "variant": name,
            "table": VARIANTS[name][0],
            "label": VARIANTS[name][1],
            **rows[name],
            "setting": setting,
            "epochs": epochs,
            "lte_neighbours": json.dumps(neighbours) if neighbours and name == DEFAULT else "",
        }
        for name in VARIANTS
        if name in rows
    ]
    csv_path = write_csv(out.with_suffix(".csv"), records, command=command)
    write_report(csv_path, kind="ablations")


# ------------------------------------------------------------------------------------------------
# The report (python -m benchmarks.report renders the CSV with it)
# ------------------------------------------------------------------------------------------------


def _ablation_table(rows: list[dict], thresholds: list[str]) -> list[str]:
    head = [
        "Variant",
        *(f"Epochs to CE < {float(t):g}" for t in thresholds),
        "Min synthesis CE",
        "Diversity",
        "Student top-1 (%)",
    ]
    body = [
        [
            r["label"],
            *("never" if blank(r[CONV + t]) else str(r[CONV + t]) for t in thresholds),
            fixed(r["min_synth_ce"], 3),
            fixed(r["diversity"], 4),
            f"{100 * float(r['student_top1']):.2f}",
        ]
        for r in rows
    ]
    return table(head, body) + [""]


@register("ablations")
def render_ablations(rows: list[dict], name: str) -> str:
    """Table-4-shaped table (generator input and noisy-layer variants), Table-6/7-shaped table
    (prompt templates and text encoders, with NAYER itself first) and the LTE nearest classes."""
    by_name = {r["variant"]: r for r in rows}
    order = [n for n in VARIANTS if n in by_name] + [n for n in by_name if n not in VARIANTS]
    thresholds = [c.removeprefix(CONV) for c in rows[0] if c.startswith(CONV)]
    t4 = [by_name[n] for n in order if by_name[n]["table"] == "table4"]
    t67 = [by_name[n] for n in order if by_name[n]["table"] == "table67"]
    t67 = ([by_name[DEFAULT]] if DEFAULT in by_name else []) + t67
    setting = rows[0].get("setting") or name.removeprefix("ablations_")
    epochs = f" ({rows[0]['epochs']} epochs each)" if not blank(rows[0].get("epochs")) else ""
    teacher = rows[0].get("teacher_top1")
    md = [
        f"# NAYER ablations on {setting}{epochs}",
        "",
        *provenance_lines(rows),
        f"Teacher top-1 {100 * float(teacher):.2f}%." if not blank(teacher) else "No evaluation set.",
        "",
        'Epochs count from 0 and include the warm-up; "never" = not within the run. Diversity: mean '
        "within-class pairwise cosine distance of teacher penultimate features within a synthesis batch, "
        "averaged over the last epoch's batches (`nayer_scale.metrics.feature_diversity`).",
        "",
    ]
    if t4:
        md += ["## Generator input and noisy layer (paper Table 4)", "", *_ablation_table(t4, thresholds)]
    if len(t67) > 1:
        md += [
            "## Prompt templates and text encoders (paper Tables 6 and 7)",
            "",
            *_ablation_table(t67, thresholds),
            "The CLIP text encoder (`lte.encoder=clip:<folder>`) is not in this table: this machine has no "
            "CLIP weights and no hub access.",
            "",
        ]
    neighbours = by_name.get(DEFAULT, {}).get("lte_neighbours")
    if not blank(neighbours):
        md += [
            '## Nearest classes in the default LTE pool (MiniLM, "a photo of a {name}")',
            "",
            *table(
                ["Class", "Nearest classes (cosine similarity)"],
                [[c, ", ".join(f"{n} ({s:.2f})" for n, s in nn)] for c, nn in json.loads(neighbours).items()],
            ),
            "",
        ]
    md.append(f"Per-variant numbers: `{name}.csv`; LTE pools: `{name}_lte.png`.")
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run (or reuse) every --variants run, then write <out>.csv, .md and <out>_lte.png."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", default="fashion_mnist")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=f"subset of: {', '.join(VARIANTS)}",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ce-thresholds", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--out", default="benchmarks/results/ablations_fashion_mnist")
    p.add_argument("--jobs", type=int, default=1, help="variants run at the same time")
    p.add_argument("--lte-cache", default="~/.cache/nayer-scale/lte", help="LTE cache used for the figure")
    add_common_args(p, "set", "launcher", "work_dir", work_dir="runs/ablations")
    args = p.parse_args(argv)
    command = command_line(argv, __file__)
    run_dirs = {name: Path(args.work_dir) / args.setting / f"{name}-e{args.epochs}" for name in args.variants}
    # With --jobs N, N runs share the machine, each with its share of the cores (the study's
    # numbers are epochs, diversity and accuracy, not seconds; wall_s in the CSV is then not comparable).
    threads = [f"run.cpu_threads={max(1, (os.cpu_count() or 1) // args.jobs)}"] if args.jobs > 1 else []

    def launch(name: str) -> None:
        cmd = run_command(
            args.setting,
            "nayer",
            args.epochs,
            run_dirs[name],
            1,
            args.launcher,
            [*VARIANTS[name][2], *threads, *args.set],
        )
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(
            cmd,
            check=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL if args.jobs > 1 else None,
        )

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(launch, args.variants))  # re-raises the first failure
    rows = {name: summarise(run_dirs[name], args.ce_thresholds) for name in args.variants}
    neighbours_file = run_dirs.get(DEFAULT, Path("/nonexistent")) / "lte_neighbours.json"
    neighbours = json.loads(neighbours_file.read_text()) if neighbours_file.is_file() else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_tables(out, args.setting, args.epochs, rows, command, neighbours)
    lte_cache = next((s.split("=", 1)[1] for s in args.set if s.startswith("lte.cache_dir=")), args.lte_cache)
    lte_figure(out.parent / f"{out.name}_lte.png", args.setting, lte_cache)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
