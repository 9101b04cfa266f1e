"""The kernels step and the kernel half of the compile step: the cases of
``benchmarks/bench_kernels.py`` at the realistic shapes, in priority order (WRN-40-2, the paper's
Table 2 teacher, then ResNet-50; channels_last, then NCHW), each group's variants warmed before the
group is timed, one row at a time (a timeout keeps the finished ones) into kernels.csv and
records.jsonl. torch is imported inside."""

from __future__ import annotations

import csv
import time

from benchmarks.lib.provenance import device_name

BN_PROVIDERS = (
    ("triton", "full"),
    ("torch", "full"),
    ("triton", "forward"),
    ("torch", "forward"),
    ("var_mean", "forward"),
    ("batch_norm_stats", "forward"),
)
EXTRA_COLUMNS = [
    "group",
    "device_median_ms",
    "device_min_ms",
    "device_max_ms",
    "device_reps",
    "host_median_ms",
    "host_min_ms",
    "host_max_ms",
    "host_reps",
]


def columns() -> list[str]:
    """kernels.csv's columns: bench_kernels' plus the group and the min / max / host times."""
    from benchmarks import bench_kernels as bk

    return bk.COLUMNS + EXTRA_COLUMNS


def kernel_groups(dry_run: bool) -> list[tuple[str, list[tuple]]]:
    """(group, cases) in priority order; a case is ("bn", shape, channels_last, provider, mode) or
    ("noisy", shape, init, provider). Per suite (wrn40_2, then resnet50) and layout (channels_last,
    then NCHW): forward + backward and forward alone of Triton and the reference, and the
    forward-only torch.var_mean / torch.batch_norm_stats baselines; then the noisy re-init; then
    the backward-only split. The dry run: bench_kernels' smoke shapes."""
    from benchmarks import bench_kernels as bk

    suites = [("smoke", bk.BN_SUITES["smoke"])] if dry_run else [(n, bk.BN_SUITES[n]) for n in ("wrn40_2", "resnet50")]
    groups = []
    for suite, shapes in suites:
        for cl in (True, False):
            cases = [("bn", shape, cl, p, mode) for shape in shapes for p, mode in BN_PROVIDERS]
            groups.append((f"{suite}/{'channels_last' if cl else 'nchw'}", cases))
    noisy = bk.NOISY_SHAPES["smoke" if dry_run else "full"]
    groups.append(
        (
            "noisy_reinit",
            [
                ("noisy", noisy, init, p)
                for init in ("normal", "kaiming_uniform")
                for p in ("triton", "torch", "torch_loop")
            ],
        )
    )
    groups.append(
        (
            "backward_only",
            [
                ("bn", shape, cl, p, "backward")
                for _, shapes in suites
                for cl in (True, False)
                for shape in shapes
                for p in ("triton", "torch")
            ],
        )
    )
    return groups


def compile_cases(dry_run: bool) -> list[tuple]:
    """The compile step's kernel cases: torch.compile(bn_stats_loss_reference), forward + backward,
    channels_last; WRN-40-2 then ResNet-50 (the dry run: one smoke shape)."""
    from benchmarks import bench_kernels as bk

    shapes = bk.BN_SUITES["smoke"][:1] if dry_run else bk.BN_SUITES["wrn40_2"] + bk.BN_SUITES["resnet50"]
    return [("bn", shape, True, "compile", "full") for shape in shapes]


def _warm(case: tuple, device: str) -> None:
    """Two untimed calls of a BN case's function (Triton JIT compile / autotuning, then warm)."""
    from benchmarks import bench_kernels as bk

    _, shape, channels_last, provider, mode = case
    x, fn = bk.bn_setup(shape, bk.DTYPES["bf16"], channels_last, provider, device)
    for _ in range(2):
        out = fn()
        if mode != "forward":
            out.backward()
        x.grad = None


def available(case: tuple, on_gpu: bool) -> bool:
    """torch.batch_norm_stats has no CPU kernel: its cases run on CUDA only."""
    return on_gpu or case[0] != "bn" or case[3] != "batch_norm_stats"


def run_case(case: tuple, device: str) -> tuple[str, str, dict]:
    """(op, mode, bench_kernels result with every timing) of one case."""
    from benchmarks import bench_kernels as bk

    if case[0] == "noisy":
        _, shape, init, provider = case
        return "noisy_init", "forward", bk.bench_noisy(shape, init, provider, device, detail=True)
    _, shape, channels_last, provider, mode = case
    return "bn_stats", mode, bk.bench_bn(shape, "bf16", channels_last, provider, mode, device, detail=True)


def kernel_row(ctx, group: str, case: tuple, device: str, copy_bw: float | None, meta: dict) -> None:
    """Measure one case; its row to kernels.csv and records.jsonl (an error is recorded instead)."""
    import torch

    try:
        op, mode, r = run_case(case, device)
    except Exception as e:  # noqa: BLE001 - the next case may still work
        ctx.error(f"kernel case {group} {case}", repr(e))
        return
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    gbps = r["traffic"] / (r["median_ms"] * 1e-3) / 1e9
    row = {
        "op": op,
        "provider": case[3],
        "mode": mode,
        "shape": r["shape"],
        "median_ms": round(r["median_ms"], 4),
        "gbps": round(gbps, 2),
        "pct_of_copy_bw": round(100 * gbps / copy_bw, 1) if copy_bw else "",
        "peak_mem_mb": "" if r["peak_mem_mb"] is None else round(r["peak_mem_mb"], 1),
        **meta,
        "group": group,
        **{k: r[k] if r[k] is None or isinstance(r[k], int) else round(r[k], 4) for k in EXTRA_COLUMNS[1:]},
    }
    with open(ctx.out / "kernels.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=columns(), restval="").writerow(row)
    ctx.record("kernel_row", **row)
    host = row["host_median_ms"]
    print(
        f"{op:10s} {case[3]:16s} {mode:8s} {row['shape']:34s} {row['median_ms']:10.4f} ms (host {host:.4f}) "
        f"{gbps:8.1f} GB/s",
        flush=True,
    )


def run_groups(ctx, groups: list[tuple[str, list[tuple]]], stop_after_s: float | None = None) -> None:
    """Each group: every BN variant warmed, then every case timed, until the step's deadline (or
    ``stop_after_s`` seconds from now); kernels.csv gets its header when it does not exist yet."""
    import torch

    from benchmarks import bench_kernels as bk

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    copy_bw = bk.copy_bandwidth_gbps()
    ctx.record("copy_bandwidth", gbps=copy_bw)
    meta = {"device": device_name(), "torch": torch.__version__, "triton": bk.triton_version(), "commit": ctx.commit}
    if not (ctx.out / "kernels.csv").is_file():
        with open(ctx.out / "kernels.csv", "w", newline="") as f:
            csv.DictWriter(f, fieldnames=columns()).writeheader()
    stop = time.time() + stop_after_s if stop_after_s else ctx.deadline
    for group, cases in groups:
        runnable = [c for c in cases if available(c, on_gpu)]
        if len(runnable) < len(cases):
            ctx.record("kernel_skip", group=group, providers=["batch_norm_stats"], why="no CPU kernel (CUDA only)")
        for case in (c for c in runnable if c[0] == "bn" and c[3] != "compile"):
            _warm(case, device)
        for case in runnable:
            if min(stop, ctx.deadline) - time.time() < 2:
                ctx.problems.append(f"kernel benchmark: budget spent in group {group}")
                return
            kernel_row(ctx, group, case, device, copy_bw, meta)
