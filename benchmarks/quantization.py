"""Data-free quantization on the Fashion-MNIST teacher (NAYER paper Table 3 shape): the float
teacher, PTQ, ZeroQ-style, NAYER and the real-data upper bound (NOT data-free) at W8A8, W6A6,
W4A8 and W4A4, with top-1 on the real test split and device-hours per row.

    python -m benchmarks.quantization                    # default budget, <= ~25 min alone on 2 CPU cores
    python -m benchmarks.quantization --budget long      # more synthesis and fine-tuning
    python -m benchmarks.quantization --smoke            # tiny sizes, checks the script, measures nothing
    python -m benchmarks.report benchmarks/results/quantization_fashion_mnist.csv   # re-render the .md

How each row is made (``nayer_scale.quantization``): the student is the shipped ResNet-20 teacher
copied, BatchNorm folded, weights per-channel symmetric and activations per-tensor affine at the
bit widths, first and last layer at 8 bits.

- PTQ (min-max / percentile): calibration on NAYER's synthetic images, no training.
- ZeroQ-style: distilled data by BN-statistics matching of pixels (DeepInversion without the CE and
  adversarial terms); min-max calibration, then KD fine-tuning, on it.
- NAYER: NAYER's memory bank (a NAYER run with the lowest-bit quantized student as the adversary);
  min-max calibration, then KD fine-tuning, on it.
- Real data (NOT data-free): min-max calibration and KD fine-tuning on real TRAINING images.

To fit a CPU session the two synthetic banks are synthesized ONCE per run and shared by the four
bit widths (each bit width calibrates and fine-tunes its own copy of the teacher on them); their
synthesis device-hours are reported once, in the bank column. Banks are kept in ``--work-dir`` and
reused when the script runs again with the same budget. Fine-tuning is the student engine's KD step
(``StudentEngine``: SGD, cosine schedule, KD at temperature 20 with the demo's augmentation), the
same number of steps for ZeroQ-style, NAYER and real data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.lib.provenance import ROOT, add_common_args, command_line, results_dir, write_csv
from benchmarks.lib.report import provenance_lines, register, table, write_report

BITS = ("w8a8", "w6a6", "w4a8", "w4a4")
ROWS = (
    ("teacher", "float teacher", "yes"),
    ("ptq_minmax", "PTQ (min-max)", "yes"),
    ("ptq_percentile", "PTQ (percentile 99.99)", "yes"),
    ("zeroq", "ZeroQ-style", "yes"),
    ("nayer", "NAYER", "yes"),
    ("real", "real data: NOT data-free (upper bound)", "NO"),
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of one benchmark run (see ``BUDGETS``)."""

    nayer_epochs: int  # NAYER bank run: epochs (1 warm-up with 2 batches, then 1 batch per epoch)
    nayer_batch: int  # images per NAYER synthesis batch
    nayer_generator_steps: int
    nayer_kd_steps: int  # student steps per epoch inside the NAYER run (its adversary)
    zeroq_batches: int  # ZeroQ-style bank: synthesis batches
    zeroq_batch: int
    zeroq_pixel_steps: int
    calib_batches: int  # calibration batches of calib_batch images
    calib_batch: int
    finetune_steps: int  # KD steps per fine-tuned row
    finetune_batch: int
    real_images: int  # real TRAINING images available to the upper bound
    eval_images: int  # real test images (10000 = the whole split)


BUDGETS = {
    "smoke": Budget(2, 24, 2, 2, 1, 24, 4, 2, 16, 3, 16, 256, 300),
    "default": Budget(4, 200, 20, 40, 2, 200, 100, 8, 64, 200, 32, 10000, 10000),
    "long": Budget(10, 200, 20, 200, 5, 200, 200, 16, 64, 1500, 32, 60000, 10000),
}


def _hours(seconds: float) -> float:
    return seconds / 3600.0  # one process


def _bank(cfg, log) -> tuple[object, dict]:
    """Run (or reuse) the synthesis run ``cfg``; returns (its memory bank, summary)."""
    from nayer_scale.memory import MemoryBank
    from nayer_scale.trainer import NayerTrainer

    run_dir = Path(cfg.run.run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file() and run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished bank of another budget: start over
    log(f"synthesis run {run_dir} ({cfg.synthesis.method}) ...")
    summary = NayerTrainer(cfg).fit()
    bank = MemoryBank(run_dir / "memory", cache="cpu")
    bank.refresh()
    log(f"  {len(bank)} images, synthesis {summary['synthesis_s']:.0f} s, whole run {summary['wall_s']:.0f} s")
    return bank, summary


def _bank_configs(args: argparse.Namespace, budget: Budget) -> tuple:
    """The NAYER and ZeroQ-style synthesis runs (configs) of this budget, the lowest bit width's
    quantized student as NAYER's adversary, ``--set`` applied, validated."""
    from nayer_scale.config import apply_overrides
    from nayer_scale.quantization.baselines import nayer_bank_config, zeroq_config

    work = Path(args.work_dir) / args.budget
    lowest = args.bits[-1]
    nayer_cfg = nayer_bank_config(lowest, str(work / "nayer_bank"), budget.nayer_epochs, budget.nayer_kd_steps, args.lr)
    s = nayer_cfg.synthesis
    s.batch_size, s.num_generator_steps = budget.nayer_batch, budget.nayer_generator_steps
    zeroq_cfg = zeroq_config(lowest, str(work / "zeroq_bank"), budget.zeroq_batches, budget.zeroq_pixel_steps, args.lr)
    zeroq_cfg.synthesis.batch_size = budget.zeroq_batch
    for cfg in (nayer_cfg, zeroq_cfg):
        cfg.distill.batch_size = budget.finetune_batch
        apply_overrides(cfg, args.set)
        cfg.validate()
    return nayer_cfg, zeroq_cfg


def _teacher_and_test(cfg, budget: Budget) -> tuple:
    """(frozen float teacher, input normalizer, normalized test images (N, 1, 28, 28), labels (N,))."""
    from nayer_scale.config import DEMO_TEACHER
    from nayer_scale.data.fashion_mnist import load_fashion_mnist
    from nayer_scale.models.sources import build_teacher
    from nayer_scale.quantization.baselines import normalizer

    t = cfg.teacher
    norm = normalizer(t.mean, t.std)
    teacher = build_teacher(t.arch, t.weights or DEMO_TEACHER, 10, t.in_channels).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    test_x, test_y = load_fashion_mnist("test")
    n_eval = min(budget.eval_images, len(test_y))
    return teacher, norm, norm(test_x[:n_eval].float().div(255).reshape(n_eval, 1, 28, 28)), test_y[:n_eval]


def _sources(args: argparse.Namespace, budget: Budget, nayer_cfg, zeroq_cfg, log) -> dict:
    """Calibration / fine-tuning image sources by name: (sample(n, generator) -> images in [0, 1],
    the synthesis run's summary or None, images available). The NAYER and ZeroQ-style banks, and
    ``budget.real_images`` real TRAINING images (the upper bound: NOT data-free)."""
    import torch

    from nayer_scale.data.fashion_mnist import load_fashion_mnist

    nayer_bank, nayer_summary = _bank(nayer_cfg, log)
    zeroq_bank, zeroq_summary = _bank(zeroq_cfg, log)
    train_x, _ = load_fashion_mnist("train")  # the upper bound only: NOT data-free
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: budget.real_images]
    real = train_x[pick].float().div(255).reshape(-1, 1, 28, 28)

    def from_bank(bank):
        return lambda n, g: bank.sample(n, g)[0]

    def from_real(n, g):
        return real[torch.randint(len(real), (n,), generator=g)]

    return {
        "nayer": (from_bank(nayer_bank), nayer_summary, None),
        "zeroq": (from_bank(zeroq_bank), zeroq_summary, None),
        "real": (from_real, None, len(real)),
    }


def _quantized_row(row: dict, spec, teacher, norm, test, sources: dict, nayer_cfg, args, budget: Budget, acc) -> dict:
    """Fill ``row`` (one quantized method at one bit width): calibrate a quantized copy of the
    teacher on its source (min-max, or percentile for ptq_percentile), KD fine-tune it for the
    zeroq / nayer / real rows, top-1 on ``test`` = (images, labels), its bank and device-hours."""
    import torch

    from nayer_scale.quantization import calibrate, quantized_copy
    from nayer_scale.quantization.baselines import kd_finetune, top1

    key, begin = row["method"], time.perf_counter()
    source_key = "nayer" if key.startswith("ptq") else key
    sample, summary, real_images = sources[source_key]
    gen = torch.Generator().manual_seed(args.seed + 1)
    method = "percentile" if key == "ptq_percentile" else "minmax"
    student = quantized_copy(teacher, spec)
    calibrate(student, [sample(budget.calib_batch, gen) for _ in range(budget.calib_batches)], method, normalize=norm)
    row.update(calibration=method, calibration_images=budget.calib_batches * budget.calib_batch)
    if key in ("zeroq", "nayer", "real"):
        kd_finetune(student, teacher, nayer_cfg, sample, budget.finetune_steps, acc, seed=args.seed)
        row["finetune_steps"] = budget.finetune_steps
    own_s = time.perf_counter() - begin
    row["top1"] = 100 * top1(student, *test)
    if summary is not None:
        row.update(bank=source_key, bank_images=summary["memory_size"], bank_device_hours=_hours(summary["wall_s"]))
    else:
        row.update(bank="real train split", bank_images=real_images)
    row["own_device_hours"] = _hours(own_s)
    return row


def measure(args: argparse.Namespace, budget: Budget, log=print) -> list[dict]:
    """Every row of the table (dicts), in BITS x ROWS order."""
    import torch
    from accelerate import Accelerator

    from nayer_scale.quantization import parse_quantization
    from nayer_scale.quantization.baselines import top1

    torch.manual_seed(args.seed)
    nayer_cfg, zeroq_cfg = _bank_configs(args, budget)
    teacher, norm, test_x, test_y = _teacher_and_test(nayer_cfg, budget)
    n_eval = len(test_y)
    start = time.perf_counter()
    teacher_top1 = top1(teacher, test_x, test_y)
    teacher_eval_s = time.perf_counter() - start
    log(f"float teacher top-1 {100 * teacher_top1:.2f} % on {n_eval} test images ({teacher_eval_s:.0f} s)")
    sources = _sources(args, budget, nayer_cfg, zeroq_cfg, log)
    acc = Accelerator(cpu=True)
    rows = []
    for bits in args.bits:
        spec = parse_quantization(bits, keep_ends_8bit=not args.all_layers_low_bit)
        for key, label, data_free in ROWS:
            row = {
                "bits": bits,
                "method": key,
                "label": label,
                "data_free": data_free,
                "calibration": "",
                "calibration_images": 0,
                "finetune_steps": 0,
                "own_device_hours": 0.0,
                "bank": "",
                "bank_images": 0,
                "bank_device_hours": 0.0,
                "eval_images": n_eval,
            }
            if key == "teacher":
                row.update(top1=100 * teacher_top1, own_device_hours=_hours(teacher_eval_s))
            else:
                _quantized_row(row, spec, teacher, norm, (test_x, test_y), sources, nayer_cfg, args, budget, acc)
                log(f"{bits} {label}: top-1 {row['top1']:.2f} % ({3600 * row['own_device_hours']:.0f} s)")
            rows.append(row)
    for row in rows:
        row["delta_vs_teacher"] = row["top1"] - 100 * teacher_top1
        row["budget"] = args.budget
        row["finetune_lr"] = args.lr
    return rows


# ------------------------------------------------------------------------------------------------
# The markdown (registered with benchmarks.lib.report: write_report and python -m benchmarks.report use it)
# ------------------------------------------------------------------------------------------------


def _f(value, digits=2) -> str:
    return "-" if value in ("", None) else f"{float(value):.{digits}f}"


def _table_body(by: dict, bits: list[str]) -> list[list]:
    """One table row per (bit width, method) of ``ROWS`` present in the CSV, in ``ROWS`` order."""
    body = []
    for b in bits:
        for key, label, _ in ROWS:
            r = by.get((b, key))
            if r is None:
                continue
            body.append(
                [
                    label,
                    "yes" if r["data_free"] == "yes" else "**NO**",
                    b.upper(),
                    _f(r["top1"]),
                    _f(r["delta_vs_teacher"]),
                    r["calibration"] or "-",
                    r["finetune_steps"],
                    _f(r["own_device_hours"], 4),
                    r["bank"] or "-",
                    r["bank_images"] or "-",
                    _f(r["bank_device_hours"], 4) if r["bank"] else "-",
                ]
            )
    return body


def _target_checks(by: dict, bits: list[str]) -> list[str]:
    """The target lines: NAYER >= ZeroQ-style >= best PTQ per bit width, and NAYER's gap to the float
    teacher at W8A8 (<= 0.5 point) and W4A8 (<= 2.0 points)."""
    checks = []
    for b in bits:
        get = {k: float(by[(b, k)]["top1"]) for _, (bb, k) in enumerate(by) if bb == b}
        ptq = max(get.get("ptq_minmax", -1), get.get("ptq_percentile", -1))
        order = get.get("nayer", -1) >= get.get("zeroq", -1) >= ptq
        checks.append(
            f"- {b.upper()}: NAYER {get.get('nayer', float('nan')):.2f} >= ZeroQ-style "
            f"{get.get('zeroq', float('nan')):.2f} >= best PTQ {ptq:.2f}: **{'met' if order else 'NOT met'}**"
        )
    for b, limit in (("w8a8", 0.5), ("w4a8", 2.0)):
        if (b, "nayer") in by:
            gap = -float(by[(b, "nayer")]["delta_vs_teacher"])
            checks.append(
                f"- {b.upper()} NAYER within {limit} point of the float teacher: gap {gap:.2f} -> "
                f"**{'met' if gap <= limit else 'NOT met'}**"
            )
    return checks


def _table_notes(first: dict) -> list[str]:
    """The notes above the table (budget, fine-tune lr, evaluation images, how the columns are counted)."""
    return [
        f"Budget `{first.get('budget', '?')}`, fine-tune lr {first.get('finetune_lr', '?')}, top-1 on "
        f"{first.get('eval_images', '?')} real test images (%).",
        "The NAYER and ZeroQ-style banks are synthesized ONCE per run and shared by the four bit widths "
        "(NAYER's adversary: the lowest-bit student); their synthesis time is the bank column, counted once "
        "per bank, not per row. Own device-hours: calibration + fine-tuning (teacher row: its evaluation); "
        "CPU: one process, wall seconds / 3600.",
        "The real-data row reads the Fashion-MNIST TRAINING split: it is NOT data-free (an upper bound).",
    ]


@register("quantization")
def render_table(rows: list[dict], name: str) -> str:
    """The Table-3-shaped markdown of the CSV rows (strings or numbers), with the target checks."""
    by = {(r["bits"], r["method"]): r for r in rows}
    bits = list(dict.fromkeys(r["bits"] for r in rows))
    first = rows[0]
    body = _table_body(by, bits)
    checks = _target_checks(by, bits)
    notes = _table_notes(first)
    header = [
        "method",
        "data-free",
        "W/A",
        "top-1 %",
        "vs float",
        "calibration",
        "fine-tune steps",
        "own device-h",
        "bank",
        "bank images",
        "bank device-h (shared)",
    ]
    return "\n".join(
        [
            f"# Data-free quantization: {name}",
            "",
            *provenance_lines(rows),
            *notes,
            "",
            *table(header, body, ["---"] * 3 + ["---:"] * 2 + ["---"] + ["---:"] * 2 + ["---"] + ["---:"] * 2),
            "",
            "Targets:",
            "",
            *checks,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Measure every row (``measure``), write the CSV and render its markdown. Returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, "set", "work_dir", "results_dir", "smoke", work_dir=str(ROOT / "runs" / "bench_quantization"))
    p.add_argument(
        "--budget",
        choices=sorted(BUDGETS),
        default="default",
        help="synthesis and fine-tuning sizes (default: <= ~25 min alone on 2 CPU cores; --smoke = smoke)",
    )
    p.add_argument(
        "--bits", default=",".join(BITS), help="comma-separated w{B}a{B}, highest first (default %(default)s)"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=1e-4,
        help="student lr of the KD fine-tuning (default %(default)s; 5e-3 diverged on the BN-folded W4A4 "
        "ResNet-20 in a 100-step probe on real images, 1e-4 and 5e-4 gained over PTQ)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--all-layers-low-bit", action="store_true", help="quantize the first / last layer at the bit width too"
    )
    p.add_argument("--name", default="quantization_fashion_mnist", help="CSV / markdown file stem")
    args = p.parse_args(argv)
    if args.smoke:
        args.budget = "smoke"
    args.bits = [b.strip() for b in args.bits.split(",") if b.strip()]
    from nayer_scale.quantization import parse_quantization

    for b in args.bits:
        parse_quantization(b)  # a clear error before any work
    budget = BUDGETS[args.budget]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    rows = measure(args, budget)
    out = results_dir(args, "quantization")
    csv_path = write_csv(
        out / f"{args.name}.csv",
        rows,
        precision="no, channels_last False",
        command=command_line(argv if argv is not None else sys.argv[1:]),
    )
    md = write_report(csv_path, kind="quantization")
    print(f"wrote {csv_path} and {md} ({time.perf_counter() - start:.0f} s in all)")
    print(json.dumps({f"{r['bits']}/{r['method']}": round(r["top1"], 2) for r in rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
