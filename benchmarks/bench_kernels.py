"""Benchmark the Triton kernels against the eager PyTorch references and torch.compile(reference).

GPU (results appended to benchmarks/results/kernels.csv with the provenance columns of
benchmarks/lib/provenance.py; benchmarks/results/kernels.md rendered from it by ``render_kernels``
here, registered with benchmarks.lib.report):

    python -m benchmarks.bench_kernels                        # everything (several minutes: compiles)
    python -m benchmarks.bench_kernels --ops bn_stats --suites resnet50 --providers triton torch
    python -m benchmarks.bench_kernels --ops noisy_init

CPU check that the script works (tiny shapes, Triton interpreter + eager reference; results go to a
temporary folder unless --results-dir is given):

    python -m benchmarks.bench_kernels --smoke

Ops, providers and modes (Liger-Kernel style):
  bn_stats    BN-statistics loss of one layer, momentum 0.9 with an EMA (the NAYER setting).
              providers: triton (fused kernels), torch (bn_stats_loss_reference, eager),
              compile (torch.compile(bn_stats_loss_reference)); modes: forward, backward (dL/dx
              only, graph built once), full (forward + backward).
              Shapes (bf16, batch 256 at 224^2 for ResNet-50, batch 400 at 32^2 for WRN-40-2), in
              NCHW and channels_last:
                resnet50: 64x112x112 (bn1), 64x56x56, 256x56x56 (layer1), 512x28x28 (layer2),
                          1024x14x14 (layer3), 2048x7x7 (layer4)
                wrn40_2:  16x32x32, 32x32x32, 64x16x16, 128x8x8
  noisy_init  re-initialisation of 40 noisy linears 512 -> 1000 (weight (40, 1000, 512), fp32):
              providers: triton (one launch), torch (reinit_noisy_linears_reference: one normal_
              on the stacked weight), torch_loop (the published code: nn.init per layer, 80
              launches); mode: forward; inits normal and kaiming_uniform.

              baselines (forward only, the statistics pass alone, no loss): var_mean
              (torch.var_mean over N, H, W) and batch_norm_stats (torch.batch_norm_stats, CUDA only).

Metrics: median time (triton.testing.do_bench on CUDA, time.perf_counter medians on CPU); achieved
GB/s from the minimum traffic (bn forward reads x once, backward reads x and writes dL/dx, full does
both; noisy_init writes the weight and bias) and its share of the device's copy bandwidth, measured
here with a 1 GiB tensor copy; peak extra CUDA memory of one call.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time

import torch

from benchmarks.lib.provenance import add_common_args, command_line, package_version, provenance, results_dir, write_csv
from benchmarks.lib.report import blank, fixed, provenance_lines, register, table, write_report
from benchmarks.lib.timing import repeat_stats, spread

# Columns of a row (the GPU suite, benchmarks/gpu_suite/kernel_steps.py, writes its kernels.csv with them and more);
# write_csv adds the rest
# of the provenance columns.
COLUMNS = ["op", "provider", "mode", "shape", "median_ms", "gbps", "pct_of_copy_bw", "peak_mem_mb",
           "device", "torch", "triton", "commit"]  # fmt: skip

BN_SUITES = {
    "resnet50": [(256, 64, 112, 112), (256, 64, 56, 56), (256, 256, 56, 56), (256, 512, 28, 28),
                 (256, 1024, 14, 14), (256, 2048, 7, 7)],
    "wrn40_2": [(400, 16, 32, 32), (400, 32, 32, 32), (400, 64, 16, 16), (400, 128, 8, 8)],
    "smoke": [(2, 8, 6, 6), (3, 5, 4, 4)],
}  # fmt: skip
NOISY_SHAPES = {"full": (40, 1000, 512), "smoke": (3, 16, 32)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BASELINES = ("var_mean", "batch_norm_stats")  # forward-only statistics passes (no loss, no backward)


# ------------------------------------------------------------------------------------------------
# Timing and provenance
# ------------------------------------------------------------------------------------------------


def median_ms(fn, grad_to_none=None, reps: int = 5) -> float:
    """Median wall time of fn() in ms: do_bench on CUDA, perf_counter (after one warm-up) on CPU."""
    if torch.cuda.is_available():
        from triton.testing import do_bench

        return float(do_bench(fn, grad_to_none=grad_to_none, return_mode="median"))
    times = []
    for i in range(reps + 1):
        for t in grad_to_none or []:
            t.grad = None
        start = time.perf_counter()
        fn()
        if i:  # the first call is a warm-up
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_case(fn, grad_to_none=None, host_reps: int = 5) -> dict:
    """Every timing of one case, in ms: ``device_median_ms`` / ``device_min_ms`` / ``device_max_ms``
    over do_bench's repetitions (CUDA events around each call, L2 flushed; None on CPU), and the
    host-inclusive ``host_median_ms`` / ``host_min_ms`` / ``host_max_ms`` of ``host_reps`` calls, each
    bracketed by a device sync and ``time.perf_counter`` (launch and Python overhead included);
    ``median_ms`` is the device median on CUDA, the host median on CPU. Call it warmed up."""

    def call(_):
        for t in grad_to_none or []:
            t.grad = None
        fn()

    host = repeat_stats(call, host_reps)
    out = {
        "host_median_ms": 1e3 * host["median_s"],
        "host_min_ms": 1e3 * host["min_s"],
        "host_max_ms": 1e3 * host["max_s"],
        "host_reps": host_reps,
        "device_median_ms": None,
        "device_min_ms": None,
        "device_max_ms": None,
        "device_reps": None,
    }
    if torch.cuda.is_available():
        from triton.testing import do_bench

        times = do_bench(fn, grad_to_none=grad_to_none, return_mode="all")
        d = spread([float(t) for t in times])
        out.update(device_median_ms=d["median"], device_min_ms=d["min"], device_max_ms=d["max"], device_reps=d["n"])
    out["median_ms"] = out["device_median_ms"] if out["device_median_ms"] is not None else out["host_median_ms"]
    return out


def peak_mem_mb(fn) -> float | None:
    """Peak CUDA memory allocated by one fn() call above what was allocated before, in MB."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth_gbps() -> float | None:
    """Device copy bandwidth (read + write bytes / time) of a 1 GiB tensor copy, GB/s."""
    if not torch.cuda.is_available():
        return None
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    ms = median_ms(functools.partial(torch.empty_like(src).copy_, src))
    del src
    torch.cuda.empty_cache()
    return 2 * 2**30 / (ms * 1e-3) / 1e9


def triton_version() -> str:
    """Installed Triton version, or "none" (read from its metadata: importing triton here would fix
    the interpreter mode before TRITON_INTERPRET is set)."""
    return package_version("triton") or "none"


# ------------------------------------------------------------------------------------------------
# Ops
# ------------------------------------------------------------------------------------------------


def bn_setup(shape, dtype, channels_last: bool, provider: str, device: str):
    """Inputs and the loss function of one BN-statistics benchmark case."""
    from nayer_kernels import bn_stats_loss_reference

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    c = shape[1]
    buffers = [torch.randn(c, device=device), torch.rand(c, device=device) + 0.5,
               torch.randn(c, device=device), torch.rand(c, device=device) + 0.5]  # fmt: skip
    if provider == "triton":
        from nayer_kernels import bn_stats_loss_triton as fn
    elif provider == "torch":
        fn = bn_stats_loss_reference
    elif provider == "var_mean":
        return x, (lambda: torch.var_mean(x, dim=(0, *range(2, x.dim())), correction=0)[0])
    elif provider == "batch_norm_stats":
        return x, (lambda: torch.batch_norm_stats(x, 1e-5)[0])
    elif provider == "compile":
        torch._dynamo.reset()  # a fresh compile per case: 20 shapes would exceed dynamo's recompile limit
        fn = torch.compile(bn_stats_loss_reference, dynamic=False)
    else:
        raise ValueError(provider)
    return x, (lambda: fn(x, *buffers, 0.9)[0])


def bench_bn(
    shape, dtype_name: str, channels_last: bool, provider: str, mode: str, device: str, detail: bool = False
) -> dict:
    """One BN-statistics case: {"shape", "median_ms", "traffic" (bytes), "peak_mem_mb"}, and with
    ``detail`` every timing of ``time_case`` (median / min / max of the device and host times).
    Two untimed calls first (JIT compile or autotuning, then the warmed path).

    Raises:
        ValueError: a baseline provider (``BASELINES``) in a mode other than forward."""
    if provider in BASELINES and mode != "forward":
        raise ValueError(f"{provider} is a forward-only baseline, not mode {mode!r}")
    x, loss_fn = bn_setup(shape, DTYPES[dtype_name], channels_last, provider, device)
    nbytes = x.numel() * x.element_size()
    if mode == "forward":
        fn, traffic = loss_fn, nbytes
    elif mode == "backward":
        loss = loss_fn()
        fn, traffic = (lambda: loss.backward(retain_graph=True)), 2 * nbytes
    else:
        fn, traffic = (lambda: loss_fn().backward()), 3 * nbytes
    for _ in range(2):  # compile / warm up outside the peak-memory measurement
        fn()
        x.grad = None
    peak = peak_mem_mb(fn)
    x.grad = None
    times = time_case(fn, grad_to_none=[x]) if detail else {"median_ms": median_ms(fn, grad_to_none=[x])}
    layout = "channels_last" if channels_last else "nchw"
    return {"shape": "x".join(map(str, shape)) + f":{dtype_name}:{layout}", **times,
            "traffic": traffic, "peak_mem_mb": peak}  # fmt: skip


def bench_noisy(shape, init: str, provider: str, device: str, detail: bool = False) -> dict:
    """One noisy-layer re-init case: {"shape", "median_ms", "traffic" (bytes), "peak_mem_mb"}, and
    with ``detail`` every timing of ``time_case``; two untimed calls first."""
    from nayer_kernels import noisy_seed, reinit_noisy_linears_reference

    weight = torch.empty(shape, device=device)
    bias = torch.empty(shape[:2], device=device)
    if provider == "triton":
        from nayer_kernels import reinit_noisy_linears_triton

        seed = noisy_seed(0, 0, 0, 0)
        fn = lambda: reinit_noisy_linears_triton(weight, bias, init, seed)  # noqa: E731
    elif provider == "torch":
        fn = lambda: reinit_noisy_linears_reference(weight, bias, init)  # noqa: E731
    elif provider == "torch_loop":  # the published code: one nn.Linear per copy, re-initialised in a loop
        linears = [torch.nn.Linear(shape[2], shape[1], device=device) for _ in range(shape[0])]

        @torch.no_grad()
        def fn():
            for lin in linears:
                if init == "normal":
                    torch.nn.init.normal_(lin.weight, 0.0, 1.0)
                else:
                    torch.nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5))
                torch.nn.init.zeros_(lin.bias)
    else:
        raise ValueError(provider)
    fn()
    fn()
    peak = peak_mem_mb(fn)
    times = time_case(fn) if detail else {"median_ms": median_ms(fn)}
    traffic = (weight.numel() + bias.numel()) * weight.element_size()
    return {"shape": "x".join(map(str, shape)) + f":fp32:{init}", **times, "traffic": traffic,
            "peak_mem_mb": peak}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def _fmt(value, digits=3) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _copy_bandwidth(rows: list[dict]) -> str:
    for r in rows:
        if not blank(r.get("copy_bw_gbps")):
            return f"{float(r['copy_bw_gbps']):.0f} GB/s"
    for r in rows:  # CSVs without the column: GB/s / share of the copy bandwidth (rounded to 0.1%)
        if not blank(r.get("pct_of_copy_bw")) and float(r["pct_of_copy_bw"]) > 0:
            return f"about {100 * float(r['gbps']) / float(r['pct_of_copy_bw']):.0f} GB/s"
    return "n/a (CPU)"


@register("kernels", scripts=("bench_kernels",))
def render_kernels(rows: list[dict], name: str) -> str:
    """Per run (commit, device, time): median ms, speed-up vs the eager torch provider (same op, mode
    and shape), GB/s, % of the copy bandwidth and peak memory of each case."""
    runs: dict[tuple, list[dict]] = {}
    for r in rows:
        runs.setdefault((r.get("commit"), r.get("device"), r.get("timestamp") or r.get("command")), []).append(r)
    lines = [
        "# Kernel benchmarks",
        "",
        "Speedup = eager torch median / this provider's median (same op, mode and shape). GB/s from the",
        "minimum traffic (see benchmarks/bench_kernels.py); % of copy BW relative to the copy bandwidth",
        "below.",
        "",
    ]
    for i, run in enumerate(runs.values()):
        eager = {(r["op"], r["mode"], r["shape"]): float(r["median_ms"]) for r in run if r["provider"] == "torch"}
        body = []
        for r in run:
            base = eager.get((r["op"], r["mode"], r["shape"]))
            body.append(
                [
                    r["op"],
                    r["provider"],
                    r["mode"],
                    r["shape"],
                    fixed(r["median_ms"], 3),
                    fixed(base / float(r["median_ms"]) if base else None, 2),
                    fixed(r["gbps"], 1),
                    fixed(r["pct_of_copy_bw"], 1),
                    fixed(r["peak_mem_mb"], 1),
                ]
            )
        lines += [f"## Run {i + 1}", ""] if len(runs) > 1 else []
        lines += [
            *provenance_lines(run)[:-1],
            f"- copy bandwidth (1 GiB copy): {_copy_bandwidth(run)}",
            "",
            *table(
                ["op", "provider", "mode", "shape", "median ms", "speedup vs torch", "GB/s", "% of copy BW", "peak MB"],
                body,
                ["---"] * 4 + ["---:"] * 5,
            ),
            "",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: which ops, providers, modes, shapes; --smoke and --results-dir."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", nargs="+", default=["bn_stats", "noisy_init"], choices=["bn_stats", "noisy_init"])
    p.add_argument(
        "--providers",
        nargs="+",
        default=None,
        help="subset of triton torch compile torch_loop (default: all; smoke: triton torch torch_loop)",
    )
    p.add_argument(
        "--modes", nargs="+", default=["forward", "backward", "full"], choices=["forward", "backward", "full"]
    )
    p.add_argument("--suites", nargs="+", default=["resnet50", "wrn40_2"], choices=["resnet50", "wrn40_2"])
    p.add_argument("--layouts", nargs="+", default=["nchw", "channels_last"], choices=["nchw", "channels_last"])
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--inits", nargs="+", default=["normal", "kaiming_uniform"], choices=["normal", "kaiming_uniform"])
    add_common_args(p, "results_dir", "smoke", smoke_help="tiny shapes; runs on CPU (Triton interpreter)")
    return p.parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    """Run the selected cases; append the rows to kernels.csv and rewrite kernels.md."""
    args = parse_args(argv)
    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.smoke:
        print("bench_kernels: a CUDA GPU is needed for the real benchmark; on CPU run with --smoke.")
        return 0
    if not on_gpu:
        # Interpreter mode is decided when triton is first imported: set it before any import of it.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    providers = args.providers or (["triton", "torch", "torch_loop"] if args.smoke else
                                   ["triton", "torch", "compile", "torch_loop"])  # fmt: skip
    device = "cuda" if on_gpu else "cpu"
    copy_bw = copy_bandwidth_gbps()
    meta = {
        **provenance(command=command_line(argv, __file__)),
        "triton": triton_version(),
        "copy_bw_gbps": round(copy_bw, 1) if copy_bw else "",
    }
    print("\n".join(f"{k}: {v}" for k, v in meta.items()))

    cases = []  # (op, provider, mode, thunk)
    if "bn_stats" in args.ops:
        shapes = BN_SUITES["smoke"] if args.smoke else [s for suite in args.suites for s in BN_SUITES[suite]]
        for shape in shapes:
            for layout in args.layouts:
                for provider in [p for p in providers if p in ("triton", "torch", "compile")]:
                    for mode in args.modes:
                        cases.append(("bn_stats", provider, mode, lambda s=shape, lay=layout, p=provider, m=mode:
                                      bench_bn(s, args.dtype, lay == "channels_last", p, m, device)))  # fmt: skip
    if "noisy_init" in args.ops:
        shape = NOISY_SHAPES["smoke" if args.smoke else "full"]
        for init in args.inits:
            for provider in [p for p in providers if p in ("triton", "torch", "torch_loop")]:
                cases.append(
                    ("noisy_init", provider, "forward", lambda i=init, p=provider: bench_noisy(shape, i, p, device))
                )

    rows = []
    for op, provider, mode, run in cases:
        result = run()
        gbps = result["traffic"] / (result["median_ms"] * 1e-3) / 1e9
        row = {
            "op": op, "provider": provider, "mode": mode, "shape": result["shape"],
            "median_ms": round(result["median_ms"], 4), "gbps": round(gbps, 2),
            "pct_of_copy_bw": round(100 * gbps / copy_bw, 1) if copy_bw else "",
            "peak_mem_mb": "" if result["peak_mem_mb"] is None else round(result["peak_mem_mb"], 1),
            "device": meta["device"], "torch": meta["torch"], "triton": meta["triton"], "commit": meta["commit"],
            "copy_bw_gbps": meta["copy_bw_gbps"],
        }  # fmt: skip
        rows.append(row)
        print(f"{op:10s} {provider:10s} {mode:8s} {row['shape']:32s} {row['median_ms']:10.4f} ms "
              f"{row['gbps']:8.1f} GB/s {_fmt(row['pct_of_copy_bw'])} %")  # fmt: skip
        if on_gpu:
            torch.cuda.empty_cache()

    csv_path = write_csv(results_dir(args, "bench_kernels") / "kernels.csv", rows, append=True, fields=meta)
    md_path = write_report(csv_path, kind="kernels")
    print(f"appended {len(rows)} rows to {csv_path}; table in {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
