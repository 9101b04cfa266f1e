"""summary.md of the GPU suite: the step table, then each step's tables, from the records so far
(tables through ``benchmarks.lib.report.table``). Stdlib only."""

from __future__ import annotations

import collections

from benchmarks.gpu_suite.spec import METHOD_LABEL, PAPER_A100_HOURS, PAPER_SPEEDUP
from benchmarks.lib.report import table

__all__ = ["render_summary"]


def _f(value, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value).replace("|", "/").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table of ``_f``-formatted cells, then a blank line."""
    return table(header, rows, cell=_f) + [""]


def render_summary(meta: dict, steps: list[dict], records: list[dict]) -> str:
    """summary.md: the run's meta (device, commit, command, set-up, wall), the step table, then each
    step's section rendered from its records ("No result." without any), with its errors."""
    by_step: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        by_step[r.get("step", "")].append(r)
    setup = next((r for r in records if r.get("kind") == "setup"), {})
    dry = " (DRY RUN: toy sizes on CPU, measures nothing)" if meta["dry_run"] else ""
    lines = [
        f"# GPU suite: {meta['device']}{dry}",
        "",
        f"- device: {meta['device']}",
        f"- commit: `{meta['commit']}`",
        f"- started: {meta['started']}",
        f"- command: `{meta['command']}`",
        f"- set-up: {setup.get('wheels', '-')}; {setup.get('lte_cache', '-')}",
        f"- wall: {meta.get('elapsed_s', '-')} s of a {meta['total_budget_s']} s budget",
        "",
        "## Steps",
        "",
    ]
    lines += _md_table(
        ["#", "step", "status", "wall s", "allowed s", "note"],
        [
            [i + 1, f"{s['name']}: {s['title']}", s["status"], s.get("wall_s"), s.get("allowed_s"), s.get("note", "")]
            for i, s in enumerate(steps)
        ],
    )
    renderers = {
        "env_tests": _render_env,
        "kernels": _render_kernels,
        "fashion_mnist": _render_fashion,
        "cifar10": _render_cifar,
        "imagenet": _render_imagenet,
        "memory_bank": _render_memory,
        "compile": _render_compile,
    }
    for i, s in enumerate(steps):
        lines += [f"## {i + 1}. {s['title']} [{s['name']}: {s['status']}]", ""]
        recs = by_step.get(s["name"], [])
        lines += renderers[s["name"]](recs) if recs else ["No result.", ""]
        errors = [r for r in recs if r.get("kind") == "error"]
        lines += [f"- error in {e.get('what')}: {e.get('message', '')[:400]}" for e in errors]
        lines += [""] if errors else []
    return "\n".join(lines) + "\n"


def _render_tests(recs: list[dict]) -> list[str]:
    lines = []
    for t in (r for r in recs if r.get("kind") == "pytest"):
        c = t["counts"]
        lines.append(
            f"`{t['command']}`: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed "
            f"({len(t.get('over_budget', []))} over the {t.get('per_test_budget_s', '-')} s per-test budget), "
            f"{c.get('error', 0)} errors, {c.get('skipped', 0)} skipped in {t['seconds']} s"
            f"{' (TIMED OUT: counts so far)' if t['timed_out'] else ''} (exit status {t['rc']})"
        )
        lines += [f"- {name}: {msg}" for name, msg in t.get("failures", {}).items()]
        slow = t.get("slowest") or []
        if slow:
            lines.append("- slowest: " + ", ".join(f"{x['test']} {x['phase']} {x['seconds']:.2f} s" for x in slow))
    return lines + [""]


def _render_env(recs: list[dict]) -> list[str]:
    env = next((r for r in recs if r.get("kind") == "env"), None)
    lines = []
    if env:
        keys = [
            "gpu",
            "capability",
            "sm_count",
            "gpu_memory_gb",
            "driver",
            "cuda",
            "cudnn",
            "torch",
            "triton",
            "python",
            "accelerate",
            "transformers",
            "numpy",
            "webdataset",
            "braceexpand",
            "cpu_count",
            "device",
            "commit",
            "date",
        ]
        lines += [f"- {k}: {env.get(k)}" for k in keys if env.get(k) is not None] + [""]
    lines += _render_tests(recs)
    rng = next((r for r in recs if r.get("kind") == "rng_compare"), None)
    if rng:
        lines += [
            f"Noisy-layer re-init draws (`tl.randn` / `tl.rand`, seed {rng['seed']}, {rng['values']} values "
            f"per init) on {rng['device']} vs Triton's interpreter: "
            + "; ".join(
                f"{init}: max |difference| {_f(v['max_abs_diff'], 9)}, bit-identical "
                f"{100 * v['bit_identical_fraction']:.2f}%, within 1e-5: {v['within_1e-5']}"
                for init, v in rng["inits"].items()
            ),
            "",
        ]
    return lines


def _spread(stats: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    """'median (min-max)' of a ``{"median_s", "min_s", "max_s"}`` dict, times ``scale``."""
    if not stats:
        return "-"
    return (
        f"{stats['median_s'] * scale:.{digits}f} ({stats['min_s'] * scale:.{digits}f}-"
        f"{stats['max_s'] * scale:.{digits}f})"
    )


def _ms_spread(r: dict | None, prefix: str) -> str:
    """'median (min-max)' ms of a kernel row's device_ or host_ columns."""
    if not r or r.get(f"{prefix}median_ms") in (None, ""):
        return "-"
    return f"{float(r[prefix + 'median_ms']):.4f} ({float(r[prefix + 'min_ms']):.4f}-{float(r[prefix + 'max_ms']):.4f})"


KERNEL_PROVIDERS = ("triton", "torch", "var_mean", "batch_norm_stats", "torch_loop", "compile")


def _kernel_table(rows: list[dict]) -> list[str]:
    """One line per (group, op, shape, mode): each provider's do_bench GPU ms and host-inclusive ms,
    median (min-max), and Triton's speed-up vs the reference, GB/s and share of the copy bandwidth."""
    cases: dict[tuple, dict] = {}
    for r in rows:
        cases.setdefault((r.get("group", "-"), r["op"], r["shape"], r["mode"]), {})[r["provider"]] = r
    body = []
    for (group, op, shape, mode), p in cases.items():
        tri, ref = p.get("triton"), p.get("torch")
        speedup = float(ref["median_ms"]) / float(tri["median_ms"]) if tri and ref else None
        gpu = [_ms_spread(p.get(k), "device_") for k in KERNEL_PROVIDERS if any(k in q for q in cases.values())]
        host = [_ms_spread(p.get(k), "host_") for k in KERNEL_PROVIDERS if any(k in q for q in cases.values())]
        body.append(
            [group, op, shape, mode, *gpu, *host, speedup, (tri or {}).get("gbps"), (tri or {}).get("pct_of_copy_bw")]
        )
    present = [k for k in KERNEL_PROVIDERS if any(k in q for q in cases.values())]
    header = (
        ["group", "op", "shape", "mode"]
        + [f"{k} GPU ms" for k in present]
        + [f"{k} host ms" for k in present]
        + ["triton speed-up vs reference", "triton GB/s", "triton % of copy BW"]
    )
    return _md_table(header, body)


def _render_kernels(recs: list[dict]) -> list[str]:
    bw = next((r for r in recs if r.get("kind") == "copy_bandwidth"), {})
    lines = [
        f"Copy bandwidth (1 GiB device copy, read + write): {_f(bw.get('gbps'), 0)} GB/s. Every variant "
        "is called twice untimed before its group is timed. GPU ms: triton.testing.do_bench (CUDA events, "
        "L2 flushed), median (min-max) of its repetitions; host ms: time.perf_counter around one call with a "
        "device sync before and after (launch and Python overhead included), median (min-max) of 5 calls. "
        "torch = the PyTorch reference of the loss; var_mean / batch_norm_stats = the statistics pass alone "
        "(forward-only baselines, no loss). On CPU (dry run) there is no GPU time.",
        "",
    ]
    for skip in (r for r in recs if r.get("kind") == "kernel_skip"):
        lines.append(f"- {skip['group']}: {', '.join(skip['providers'])} not run: {skip['why']}")
    return lines + [""] + _kernel_table([r for r in recs if r.get("kind") == "kernel_row"])


def _share_lines(label: str, share: dict) -> list[str]:
    """The profiler share table of one synthesis batch."""
    head = (
        f"torch.profiler share of one synthesis batch, {label}: batch {_f(share['batch_cpu_ms'], 1)} ms CPU, "
        f"{_f(share['batch_cuda_ms'], 1)} ms of CUDA kernels (BN-statistics loss: its record_function range "
        "and its backward autograd nodes; re-init: its range)."
    )
    body = [
        [name, r["calls"], r["cpu_ms"], r["cpu_share"], r["cuda_ms"], r["cuda_share"]]
        for name, r in share["rows"].items()
    ]
    return [head, ""] + _md_table(["part", "calls", "CPU ms", "CPU share", "CUDA ms", "CUDA share"], body)


def _kernels(r: dict) -> str:
    """The kernels of a condition, with "+compile" when the trainer ran with run.compile=true."""
    return r["kernels"] + ("+compile" if r.get("compile") else "")


def _projection_rows(rows: list[dict]) -> list[list]:
    di = next((r for r in rows if r["method"] == "deepinversion"), None)
    body = []
    for r in rows:
        x = r["recipe"]
        speedup = di["projected_hours"] / r["projected_hours"] if di and di["precision"] == r["precision"] else None
        body.append(
            [
                METHOD_LABEL[r["method"]],
                _kernels(r),
                r["precision"],
                r.get("recipe_source", "-"),
                f"{x['synthesis_batches_warmup']} + {x['synthesis_batches']} x {x['synthesis_batch_size']}",
                x["steps_per_batch"],
                f"{x['student_steps']} x {x['student_batch_size']}",
                r["projected_synthesis_hours"],
                r["projected_student_hours"],
                r["projected_hours"],
                f"{r['projected_hours_min']:.2f}-{r['projected_hours_max']:.2f}",
                speedup,
                PAPER_A100_HOURS[r["method"]],
                PAPER_SPEEDUP[r["method"]],
            ]
        )
    return body


def _timing_table(rows: list[dict]) -> list[str]:
    """The CIFAR-10 conditions' measured per-batch and per-step times, throughput and peak memory."""
    lines = [
        "Per batch and per step on this device, after an untimed first batch and an untimed second one (the "
        "BN-statistics EMA set); host-inclusive seconds per call, median (min-max) of the timed repetitions; "
        "s/batch scaled from the timed steps to the recipe's.",
        "",
    ]
    return lines + _md_table(
        [
            "method",
            "kernels",
            "precision",
            "timed steps",
            "s/batch",
            "s/warm-up batch",
            "student ms/step",
            "synth img/s",
            "student img/s",
            "synth peak GB",
            "student peak GB",
        ],
        [
            [
                METHOD_LABEL[r["method"]],
                _kernels(r),
                r["precision"],
                r["timed_steps_per_batch"],
                _spread(r["batch_s"], r["recipe"]["steps_per_batch"] / r["timed_steps_per_batch"]),
                _spread(r["warmup_batch_s"], r["recipe"]["steps_per_batch"] / r["timed_steps_per_batch"]),
                _spread(r["student_step_s"], 1e3, 2),
                r["synthesis_images_per_s"],
                r["student_images_per_s"],
                r["synthesis_peak_gb"],
                r["student_peak_gb"],
            ]
            for r in rows
        ],
    )


def _projection_table(rows: list[dict], device: str) -> list[str]:
    """The CIFAR-10 conditions' projected whole-run hours beside the paper's Table 2."""
    lines = [
        f"PROJECTIONS on this project's code, in hours of {device} (measured per batch / per step above x "
        "each method's own published recipe; set-up, evaluation, memory-bank reads and checkpoints left "
        "out), beside the paper's single-A100 whole-run hours (Table 2), which are not measured here.",
        "",
    ]
    return lines + _md_table(
        [
            "method",
            "kernels",
            "precision",
            "recipe",
            "synthesis batches (warm-up + later x size)",
            "steps / batch",
            "student steps x batch",
            "proj. synth h",
            "proj. student h",
            f"proj. h ({device})",
            "proj. h min-max",
            "proj. speed-up vs DI",
            "paper A100 h (Table 2)",
            "paper speed-up vs DI",
        ],
        _projection_rows(rows),
    )


def _cifar_notes(rows: list[dict]) -> list[str]:
    """The profiler share tables, the Triton vs reference speed-ups and the LTE used."""
    lines = []
    for r in rows:
        if r.get("profile"):
            lines += _share_lines(f"{METHOD_LABEL[r['method']]} {r['kernels']} {r['precision']}", r["profile"])
    pairs = {(r["method"], r["kernels"], r["precision"]): r for r in rows}
    for prec in ("bf16", "fp32"):
        t, ref = pairs.get(("nayer", "triton", prec)), pairs.get(("nayer", "reference", prec))
        if t and ref:
            lines.append(
                f"- NAYER {prec}: Triton kernels vs references: synthesis "
                f"{ref['s_per_batch'] / t['s_per_batch']:.2f}x, "
                f"projected run {ref['projected_hours'] / t['projected_hours']:.2f}x."
            )
    if rows:
        lines.append(f"- LTE: {rows[0]['lte']}.")
    return lines


def _render_cifar(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "cifar_condition"]
    device = rows[0]["device"] if rows else "this device"
    return _timing_table(rows) + _projection_table(rows, device) + _cifar_notes(rows) + [""]


FASHION_PHASES = ("setup_s", "synthesis_s", "distillation_s", "evaluation_s", "io_s", "checkpoint_s")


def _fashion_fit_table(rows: list[dict]) -> list[str]:
    """The fashion_mnist fit()s: top-1, wall clock and summary.json's phases."""
    lines = [
        "The fashion_mnist preset's real fit() with the shipped teacher, evaluated on the real test split; "
        "phases from its summary.json (seconds).",
        "",
    ]
    return lines + _md_table(
        [
            "condition",
            "kernels",
            "precision",
            "teacher top-1",
            "student top-1",
            "fit wall s",
            *FASHION_PHASES,
            "device-h",
            "data",
        ],
        [
            [
                r["label"],
                r["kernels_resolved"],
                r["resolved_precision"].get("mixed_precision"),
                _f(r["summary"].get("teacher_top1"), 4),
                _f(r["summary"].get("student_top1"), 4),
                r["fit_wall_s"],
                *[r["summary"].get(k) for k in FASHION_PHASES],
                _f(r["summary"].get("device_hours"), 4),
                r["data"],
            ]
            for r in rows
        ],
    )


def _fashion_projection_table(rows: list[dict]) -> list[str]:
    """The projection of the fashion_mnist preset beside its measured fit() (empty when no condition
    was projected)."""
    body = []
    for r in (r for r in rows if "projected_hours" in r):
        s = r["summary"]
        body.append(
            [
                r["kernels_resolved"],
                3600 * r["projected_synthesis_hours"],
                s.get("synthesis_s"),
                3600 * r["projected_student_hours"],
                s.get("distillation_s"),
                3600 * r["projected_hours"],
                f"{3600 * r['projected_hours_min']:.1f}-{3600 * r['projected_hours_max']:.1f}",
                r["fit_wall_s"],
                r["fit_wall_s"] / (3600 * r["projected_hours"]),
                ((s.get("synthesis_s") or 0) + (s.get("distillation_s") or 0)) / (3600 * r["projected_hours"]),
            ]
        )
    if not body:
        return []
    lines = [
        "How far a projection can be trusted: the same per-batch / per-step timing and projection as "
        "the CIFAR-10 step, applied to this preset, beside the measured fit() (seconds).",
        "",
    ]
    return lines + _md_table(
        [
            "kernels",
            "proj. synthesis s",
            "measured synthesis s",
            "proj. student s",
            "measured distillation s",
            "proj. total s",
            "proj. min-max s",
            "measured fit wall s",
            "measured wall / projected",
            "measured synthesis + distillation / projected",
        ],
        body,
    )


def _render_fashion(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "fashion_condition"]
    return _fashion_fit_table(rows) + _fashion_projection_table(rows)


def _render_memory(recs: list[dict]) -> list[str]:
    w = next((r for r in recs if r.get("kind") == "memory_write"), None)
    lines = []
    if w:
        lines += [
            f"Wrote {w['shards']} shards of {w['images_per_shard']} images {w['image_shape']} uint8 "
            f"({w['mb']:.1f} MB) in {w['seconds']:.2f} s: {w['mb_per_s']:.0f} MB/s (tar + fsync).",
            "",
        ]
    lines += _md_table(
        ["cache", "images", "load s", "sample ms (batch)", "images/s", "MB/s"],
        [
            [r["cache"], r["images"], r["load_s"], r["sample_ms"], r["images_per_s"], r["mb_per_s"]]
            for r in recs
            if r.get("kind") == "memory_sample"
        ],
    )
    return lines


def _render_imagenet(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "imagenet_condition"]
    timed = rows[0]["timed_generator_steps"] if rows else "-"
    lines = [
        f"imagenet_r50 preset per process (random-weight ResNet-50 teacher and student); synthesis timed over "
        f"{timed} generator steps per batch and scaled to the preset's; median (min-max) of the timed "
        "repetitions after two untimed batches; hours = PROJECTION of the full 320-epoch preset on one process "
        "(= single-node wall-clock with any number of GPUs).",
        "",
    ]
    lines += _md_table(
        [
            "condition",
            "student",
            "s/batch (preset steps)",
            "student ms/step",
            "synth img/s",
            "gen-step img/s",
            "student img/s",
            "synth peak GB",
            "student peak GB",
            "proj. h per process",
            "proj. h min-max",
            "proj. GPU-h on 8 GPUs",
        ],
        [
            [
                r["condition"],
                r["student"],
                _spread(r["batch_s"], r["recipe"]["steps_per_batch"] / r["timed_generator_steps"]),
                _spread(r["student_step_s"], 1e3, 1),
                r["synthesis_images_per_s"],
                r["generator_step_images_per_s"],
                r["student_images_per_s"],
                r["synthesis_peak_gb"],
                r["student_peak_gb"],
                r["projected_hours_per_process"],
                f"{r['projected_hours_min']:.2f}-{r['projected_hours_max']:.2f}",
                r["projected_gpu_hours_8"],
            ]
            for r in rows
        ],
    )
    return lines


def _render_compile(recs: list[dict]) -> list[str]:
    lines = [
        "torch.compile last, under its own hard cap: torch.compile(bn_stats_loss_reference) (a fresh "
        "compile per shape, forward + backward, channels_last), then NAYER at the CIFAR-10 shapes with "
        "run.compile=true (the student and the teacher's KD forward compiled; compare with the cifar10 "
        "step's NAYER triton bf16 row).",
        "",
    ]
    lines += _kernel_table([r for r in recs if r.get("kind") == "kernel_row"])
    if any(r.get("kind") == "cifar_condition" for r in recs):
        lines += _render_cifar(recs)
    lines += [f"- {r['note']}" for r in recs if r.get("kind") == "compile_note"]
    return lines + [""]
