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
    lines = [f"# GPU suite: {meta['device']}{dry}",
             "", f"- device: {meta['device']}", f"- commit: `{meta['commit']}`", f"- started: {meta['started']}",
             f"- command: `{meta['command']}`", f"- set-up: {setup.get('wheels', '-')}; {setup.get('lte_cache', '-')}",
             f"- wall: {meta.get('elapsed_s', '-')} s of a {meta['total_budget_s']} s budget", "", "## Steps", ""]
    lines += _md_table(["#", "step", "status", "wall s", "allowed s", "note"],
                    [[i + 1, f"{s['name']}: {s['title']}", s["status"], s.get("wall_s"), s.get("allowed_s"),
                      s.get("note", "")] for i, s in enumerate(steps)])
    renderers = {"env_tests": _render_env, "kernels": _render_kernels, "cifar10": _render_cifar,
                 "imagenet": _render_imagenet, "memory_bank": _render_memory, "kernel_tests_all": _render_tests}
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
        lines.append(f"`{t['command']}`: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
                     f"{c.get('error', 0)} errors, {c.get('skipped', 0)} skipped in {t['seconds']} s"
                     f"{' (TIMED OUT: counts so far)' if t['timed_out'] else ''} (exit status {t['rc']})")
        lines += [f"- {name}: {msg}" for name, msg in t.get("failures", {}).items()]
    return lines + [""]


def _render_env(recs: list[dict]) -> list[str]:
    env = next((r for r in recs if r.get("kind") == "env"), None)
    lines = []
    if env:
        keys = ["gpu", "capability", "sm_count", "gpu_memory_gb", "driver", "cuda", "cudnn", "torch", "triton",
                "python", "accelerate", "transformers", "numpy", "webdataset", "braceexpand", "cpu_count", "device",
                "commit", "date"]
        lines += [f"- {k}: {env.get(k)}" for k in keys if env.get(k) is not None] + [""]
    lines += _render_tests(recs)
    rng = next((r for r in recs if r.get("kind") == "rng_compare"), None)
    if rng:
        lines += [f"Noisy-layer re-init draws (`tl.randn` / `tl.rand`, seed {rng['seed']}, {rng['values']} values "
                  f"per init) on {rng['device']} vs Triton's interpreter: " +
                  "; ".join(f"{init}: max |difference| {_f(v['max_abs_diff'], 9)}, bit-identical "
                            f"{100 * v['bit_identical_fraction']:.2f}%, within 1e-5: {v['within_1e-5']}"
                            for init, v in rng["inits"].items()), ""]
    return lines


def _render_kernels(recs: list[dict]) -> list[str]:
    bw = next((r for r in recs if r.get("kind") == "copy_bandwidth"), {})
    lines = [f"Copy bandwidth (1 GiB device copy, read + write): {_f(bw.get('gbps'), 0)} GB/s.", ""]
    rows = [r for r in recs if r.get("kind") == "kernel_row"]
    cases: dict[tuple, dict] = {}
    for r in rows:
        cases.setdefault((r["op"], r["shape"], r["mode"]), {})[r["provider"]] = r
    body = []
    for (op, shape, mode), p in cases.items():
        ms = {k: float(v["median_ms"]) for k, v in p.items()}
        tri = p.get("triton", {})
        body.append([op, shape, mode, ms.get("triton"), ms.get("torch"), ms.get("compile"), ms.get("torch_loop"),
                      ms["torch"] / ms["triton"] if "torch" in ms and "triton" in ms else None,
                      ms["compile"] / ms["triton"] if "compile" in ms and "triton" in ms else None,
                      tri.get("gbps"), tri.get("pct_of_copy_bw")])
    lines += [""] + _md_table(["op", "shape", "mode", "triton ms", "eager ms", "compile ms", "per-layer loop ms",
                            "triton speed-up vs eager", "vs compile", "triton GB/s", "triton % of copy BW"], body)
    return lines


def _render_cifar(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "cifar_condition"]
    lines = ["Timed on this GPU; projection = each preset's full recipe (synthesis batches x s/batch + student "
             "steps x s/step; set-up, memory-bank I/O, evaluation and checkpoints left out). Paper: single A100, "
             "total training hours (Table 2) and average speed-ups vs DeepInversion.", ""]
    di = next((r for r in rows if r["method"] == "deepinversion"), None)
    body = []
    for r in rows:
        same_di = di and di["precision"] == r["precision"]
        speedup = di["projected_hours"] / r["projected_hours"] if same_di else None
        body.append([METHOD_LABEL[r["method"]], r["kernels"], r["precision"], r["s_per_batch"],
                      r["s_per_warmup_batch"],
                      r["synthesis_images_per_s"], r["generator_step_images_per_s"], 1e3 * r["s_per_student_step"],
                      r["student_images_per_s"], r["synthesis_peak_gb"], r["student_peak_gb"],
                      r["projected_synthesis_hours"], r["projected_student_hours"], r["projected_hours"],
                      PAPER_A100_HOURS[r["method"]], speedup, PAPER_SPEEDUP[r["method"]]])
    lines += _md_table(["method", "kernels", "precision", "s/batch", "s/warm-up batch", "synth img/s", "gen-step img/s",
                     "student ms/step", "student img/s", "synth peak GB", "student peak GB", "proj. synth h",
                     "proj. student h", "proj. GPU-h (this GPU)", "paper A100-h", "speed-up vs DI (measured)",
                     "paper speed-up"], body)
    recipes = {r["method"]: r["recipe"] for r in rows}
    if rows:
        lines.append("Recipes (preset: warm-up + later synthesis batches x steps per batch, student steps): "
                     + "; ".join(
            f"{METHOD_LABEL[m]} ({x['preset']}): {x['synthesis_batches_warmup']} + {x['synthesis_batches']} x "
            f"{x['steps_per_batch']}, {x['student_steps']}" for m, x in recipes.items()) + f". LTE: {rows[0]['lte']}.")
    pairs = {(r["method"], r["kernels"], r["precision"]): r for r in rows}
    for prec in ("bf16", "fp32"):
        t, ref = pairs.get(("nayer", "triton", prec)), pairs.get(("nayer", "reference", prec))
        if t and ref:
            lines.append(f"- NAYER {prec}: Triton kernels vs references: synthesis "
                         f"{ref['s_per_batch'] / t['s_per_batch']:.2f}x, "
                         f"projected run {ref['projected_hours'] / t['projected_hours']:.2f}x.")
    return lines + [""]


def _render_imagenet(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "imagenet_condition"]
    timed = rows[0]["timed_generator_steps"] if rows else "-"
    lines = [f"imagenet_r50 preset per process; synthesis timed over {timed} "
             "generator steps per batch and scaled to the preset's steps; hours = full 320-epoch preset on one "
             "process = single-node wall-clock with any number of GPUs.", ""]
    lines += _md_table(["condition", "student", "s/batch (preset steps)", "synth img/s", "gen-step img/s",
                        "student img/s",
                     "synth peak GB", "student peak GB", "h per process", "GPU-h on 8 GPUs"],
                    [[r["condition"], r["student"], r["s_per_batch"], r["synthesis_images_per_s"],
                      r["generator_step_images_per_s"], r["student_images_per_s"], r["synthesis_peak_gb"],
                      r["student_peak_gb"], r["projected_hours_per_process"], r["projected_gpu_hours_8"]]
                     for r in rows])
    return lines


def _render_memory(recs: list[dict]) -> list[str]:
    w = next((r for r in recs if r.get("kind") == "memory_write"), None)
    lines = []
    if w:
        lines += [f"Wrote {w['shards']} shards of {w['images_per_shard']} images {w['image_shape']} uint8 "
                  f"({w['mb']:.1f} MB) in {w['seconds']:.2f} s: {w['mb_per_s']:.0f} MB/s (tar + fsync).", ""]
    lines += _md_table(["cache", "images", "load s", "sample ms (batch)", "images/s", "MB/s"],
                    [[r["cache"], r["images"], r["load_s"], r["sample_ms"], r["images_per_s"], r["mb_per_s"]]
                     for r in recs if r.get("kind") == "memory_sample"])
    return lines
