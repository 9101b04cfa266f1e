"""The suite's steps, each run in its own process (``python -m benchmarks.gpu_suite --run-step
NAME``) with a deadline: a ``StepContext`` records every measurement at once, runs the
measurements that need a fresh process as workers (``workers.py``) and pytest in sub-processes, and
collects the problems that make the step "partial". torch and nayer_scale are imported inside the
steps (stdlib only at import)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.gpu_suite.kernel_steps import compile_cases, kernel_groups, run_groups
from benchmarks.gpu_suite.orchestrator import nvidia_smi, run_streamed
from benchmarks.gpu_suite.records import append_record, utc_now
from benchmarks.gpu_suite.spec import (
    CIFAR_COMPILE,
    CIFAR_CONDITIONS,
    CIFAR_DRY_CONDITIONS,
    FASHION_CONDITIONS,
    FASHION_DRY_CONDITIONS,
    HANG_ENV,
    IMAGENET_CONDITIONS,
    IMAGENET_DRY_CONDITIONS,
    MODULE,
    PER_TEST_BUDGET_S,
)
from benchmarks.lib.provenance import device_name, package_version
from benchmarks.lib.timing import sync, timed


class StepContext:
    """What a step process knows: its output folder, deadline, carry folder, scratch folder."""

    def __init__(self, args: argparse.Namespace):
        self.name, self.out, self.deadline = args.run_step, Path(args.out), float(args.deadline)
        self.dry_run, self.carry, self.commit = args.dry_run, Path(args.carry), args.commit
        self.scratch = Path(args.scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, kind: str, **data) -> dict:
        rec = {"step": self.name, "kind": kind, **data}
        append_record(self.out, rec)
        return rec

    def error(self, what: str, message: str) -> None:
        self.problems.append(f"{what}: {message.strip().splitlines()[-1][:200] if message.strip() else 'failed'}")
        self.record("error", what=what, message=message[-2000:])

    def worker(self, kind: str, spec: dict, cap: float) -> bool:
        """Run one measurement in a fresh process (timeout: ``cap`` s or what is left); it writes its
        own record. Returns whether it succeeded."""
        timeout = min(cap, self.left())
        if timeout < 5:
            self.problems.append(f"{kind} {spec.get('label')}: not run (step budget spent)")
            return False
        cmd = [
            sys.executable,
            "-m",
            MODULE,
            "--worker",
            kind,
            "--spec",
            json.dumps(spec),
            "--out",
            self.out,
            "--carry",
            self.carry,
            "--scratch",
            self.scratch,
            "--run-step",
            self.name,
            "--commit",
            self.commit,
        ]
        cmd += ["--dry-run"] if self.dry_run else []
        print(f"--- {kind} {spec.get('label')} (timeout {timeout:.0f} s)", flush=True)
        result = run_streamed(cmd, timeout, sys.stdout)
        if result["timed_out"] or result["rc"] != 0:
            why = f"timed out after {timeout:.0f} s" if result["timed_out"] else f"exit status {result['rc']}"
            self.error(f"{kind} {spec.get('label')}", f"{why}\n{result['output'][-1500:]}")
            return False
        return True

    def pytest(self, marker: str, keyword: str | None, timeout: float, per_test: float) -> dict:
        """``pytest -v -m MARKER`` over ``KERNEL_TESTS[MARKER]`` with a per-test budget of ``per_test`` s (the
        suite's own plugin, ``benchmarks.gpu_suite.pytest_budget``: no extra package, no conftest):
        counts, failure messages and the slowest tests (parsed from the verbose output, so a timeout
        still reports the tests that ran)."""
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "-p",
            "benchmarks.gpu_suite.pytest_budget",
            f"--per-test-budget={per_test:g}",
            "--durations=5",
            "--durations-min=0",
            "-m",
            marker,
            *KERNEL_TESTS[marker],
        ] + (["-k", keyword] if keyword else [])
        env = dict(os.environ, COLUMNS="400")  # the short summary's failure messages are cut at the width
        result = run_streamed(cmd, min(timeout, self.left()), sys.stdout, env=env, keep_all=True)
        outcomes = dict(
            re.findall(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", result["output"], re.M)
        )
        counts = collections.Counter(v.lower() for v in outcomes.values())
        failures = {
            m[1]: (m[2] or m[0])[:300]
            for m in re.findall(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", result["output"], re.M)
        }
        slowest = [
            {"seconds": float(m[0]), "phase": m[1], "test": m[2]}
            for m in re.findall(r"^([0-9.]+)s (call|setup|teardown)\s+(\S+)$", result["output"], re.M)
        ]
        over = [t for t, msg in failures.items() if "TestBudgetExceeded" in msg]
        rec = self.record(
            "pytest",
            command=shlex.join(["pytest", *cmd[3:]]),
            counts=dict(counts),
            outcomes=outcomes,
            failures=failures,
            rc=result["rc"],
            timed_out=result["timed_out"],
            seconds=result["seconds"],
            per_test_budget_s=per_test,
            over_budget=over,
            slowest=slowest,
        )
        if result["timed_out"]:
            self.problems.append(f"pytest -m {marker} timed out after {result['seconds']} s")
        if counts["failed"] or counts["error"] or (result["rc"] not in (0, 5) and not result["timed_out"]):
            self.problems.append(
                f"pytest -m {marker}: {counts['failed']} failed ({len(over)} over the per-test "
                f"budget), {counts['error']} errors (exit status {result['rc']})"
            )
        if not self.dry_run and counts["skipped"] and marker == "gpu":
            self.problems.append(f"{counts['skipped']} GPU tests skipped")
        return rec


# The kernel tests of each pytest call: the GPU tests are in both files (the RNG comparison starts a
# process, so it is an integration test); "the rest" is the unit file (the integration file's other
# tests run whole distillations or re-run the unit file in the interpreter).
KERNEL_TESTS = {
    "gpu": ["tests/unit/test_kernels.py", "tests/integration/test_kernels_runs.py"],
    "not gpu": ["tests/unit/test_kernels.py"],
}


def run_step_process(args: argparse.Namespace) -> int:
    """A step process (``--run-step NAME``): run the step, then record its ``step_end`` with the
    problems found (the orchestrator turns them into the status "partial"). Returns 0."""
    ctx = StepContext(args)
    if os.environ.get(HANG_ENV) == ctx.name:  # tests: a step that never finishes
        time.sleep(3600)
    {
        "env_tests": step_env_tests,
        "kernels": step_kernels,
        "fashion_mnist": step_fashion,
        "cifar10": step_cifar10,
        "imagenet": step_imagenet,
        "memory_bank": step_memory_bank,
        "compile": step_compile,
    }[ctx.name](ctx)
    ctx.record("step_end", problems=ctx.problems)
    return 0


def step_env_tests(ctx: StepContext) -> None:
    """Step 1: the environment record; the CUDA kernel tests with a per-test budget (``pytest -m gpu``
    at realistic shapes, then the rest of tests/unit/test_kernels.py compiled on CUDA without the
    end-to-end test, a small subset in the dry run); the RNG comparison."""
    import torch

    import nayer_kernels

    env = {
        "device": device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "commit": ctx.commit,
        "date": utc_now(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "nayer_kernels": nayer_kernels.__file__,
    }
    for dist in ("triton", "accelerate", "transformers", "numpy", "safetensors", "webdataset", "braceexpand"):
        env[dist] = package_version(dist)  # wheels installed with --target carry their metadata
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            sm_count=props.multi_processor_count,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            driver=nvidia_smi("driver_version"),
        )
    ctx.record("env", **env)
    print(json.dumps(env, indent=1), flush=True)
    per_test = 60 if ctx.dry_run else PER_TEST_BUDGET_S
    ctx.pytest("gpu", None, ctx.left() - 20, per_test)
    ctx.pytest(
        "not gpu", "noisy_seed_mixing or select_backend" if ctx.dry_run else "not end_to_end", ctx.left() - 8, per_test
    )
    try:
        rng_compare(ctx)
    except Exception as e:  # noqa: BLE001 - reported, and the step goes on
        ctx.error("rng comparison", repr(e))


RNG_CODE = """
import sys, torch
from nayer_kernels.noisy_init_triton import reinit_noisy_linears_triton
out = {}
for init in ("normal", "kaiming_uniform"):
    w = torch.empty(4, 16, 128)
    reinit_noisy_linears_triton(w, None, init, int(sys.argv[2]))
    out[init] = w
torch.save(out, sys.argv[1])
"""


def rng_compare(ctx: StepContext, seed: int = 123456789) -> None:
    """The noisy-layer re-init draws (tl.randn for normal, tl.rand for kaiming_uniform) of the same
    seed from Triton's interpreter (a CPU subprocess) and from this device: max |difference| and the
    share of bit-identical values (in the dry run both sides are the interpreter)."""
    import torch

    from nayer_kernels.noisy_init_triton import reinit_noisy_linears_triton

    path = ctx.scratch / "interpreter_draws.pt"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", RNG_CODE, str(path), str(seed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=max(5, min(120, ctx.left())),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"interpreter draws failed: {proc.stderr[-1000:]}")
    reference = torch.load(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    inits = {}
    for init, ref in reference.items():
        w = torch.empty(ref.shape, device=device)
        reinit_noisy_linears_triton(w, None, init, seed)
        diff = (w.cpu() - ref).abs()
        inits[init] = {
            "max_abs_diff": diff.max().item(),
            "bit_identical_fraction": (diff == 0).float().mean().item(),
            "within_1e-5": bool(torch.allclose(w.cpu(), ref, atol=1e-5, rtol=1e-5)),
        }
    rec = ctx.record(
        "rng_compare",
        seed=seed,
        values=reference["normal"].numel(),
        inits=inits,
        device=torch.cuda.get_device_name(0) if device == "cuda" else "interpreter (dry run)",
    )
    if not all(v["within_1e-5"] for v in rec["inits"].values()):
        ctx.problems.append("GPU re-init draws differ from the interpreter's beyond 1e-5")


def step_kernels(ctx: StepContext) -> None:
    """Step 2: bench_kernels' cases in ``kernel_steps.kernel_groups`` order (WRN-40-2, then
    ResNet-50; channels_last, then NCHW; Triton, reference, torch.var_mean, torch.batch_norm_stats;
    then the noisy re-init and the backward-only split): per case the do_bench GPU time and the
    host-inclusive time per call, each median / min / max; GB/s, % of the copy bandwidth, peak MB."""
    run_groups(ctx, kernel_groups(ctx.dry_run))


def step_fashion(ctx: StepContext) -> None:
    """Step 3: the fashion_mnist preset's real fit() (shipped teacher, carried real test split), one
    process per kernel backend; the Triton one first times the preset per batch and per step and
    projects the whole run, to set beside its measured wall clock."""
    for kernels, project in FASHION_DRY_CONDITIONS if ctx.dry_run else FASHION_CONDITIONS:
        ctx.worker("fashion", {"label": f"fashion_mnist/{kernels}", "kernels": kernels, "project": project}, 75)


def _cifar_spec(condition: tuple, compiled: bool = False) -> dict:
    method, kernels, precision, timed_steps, batches, student_steps, profile = condition
    return {
        "label": f"{method}/{kernels}/{precision}{'+compile' if compiled else ''}",
        "method": method,
        "kernels": kernels,
        "precision": precision,
        "timed_steps": timed_steps,
        "batches": batches,
        "student_steps": student_steps,
        "profile": profile,
        "compile": compiled,
    }


def step_cifar10(ctx: StepContext) -> None:
    """Step 4: one process per CIFAR-10 condition, in priority order."""
    for condition in CIFAR_DRY_CONDITIONS if ctx.dry_run else CIFAR_CONDITIONS:
        ctx.worker("cifar", _cifar_spec(condition), 60 if ctx.dry_run else 35)


def _imagenet_spec(condition: tuple) -> dict:
    label, precision, kernels, compiled = condition
    return {"label": label, "precision": precision, "kernels": kernels, "compile": compiled}


def step_imagenet(ctx: StepContext) -> None:
    """Step 5: the imagenet_r50 shapes, one process per condition (bf16 Triton, bf16 reference, fp32)."""
    for condition in IMAGENET_DRY_CONDITIONS if ctx.dry_run else IMAGENET_CONDITIONS:
        ctx.worker("imagenet", _imagenet_spec(condition), 60 if ctx.dry_run else 40)


def step_compile(ctx: StepContext) -> None:
    """Step 7, last, under its own hard cap (the orchestrator gives it no time left over by others):
    torch.compile(bn_stats_loss_reference) on the BN shapes for up to 35% of the cap, then NAYER at
    the CIFAR-10 shapes with run.compile=true (bf16, Triton) with what is left (not in the dry run:
    tests/integration/test_compile.py runs run.compile=true on CPU)."""
    run_groups(ctx, [("compile", compile_cases(ctx.dry_run))], stop_after_s=0.35 * ctx.left())
    if ctx.dry_run:
        ctx.record(
            "compile_note",
            note="dry run: the trainer's run.compile=true is tested by tests/integration/test_compile.py",
        )
        return
    ctx.worker("cifar", _cifar_spec(CIFAR_COMPILE, compiled=True), ctx.left())


def step_memory_bank(ctx: StepContext) -> None:
    """Step 6: write shards, then load and sample with each cache (images/s and MB/s of ``sample``),
    then the student loop's prefetching path with each cache (share of the step spent waiting)."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shards, per, size, iters = (2, 8, 32, 3) if ctx.dry_run else (4, 256, 224, 10)
    root = ctx.scratch / "bank"
    shutil.rmtree(root, ignore_errors=True)
    _memory_write(ctx, root, device, shards, per, size)
    for cache in ("device", "cpu", "none"):
        try:
            _memory_sample(ctx, root, device, cache, per, iters, 3 * size * size / 1e6)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory for one cache; the others still run
            ctx.error(f"memory bank cache={cache}", repr(e))
    # The student loop's path: host-drawn batches prefetched 2 ahead; the step is emulated by 80 ms
    # of host sleep (a ResNet-50 step of 256 images on an H100 in bf16 leaves the host free).
    step_s = 0.0 if ctx.dry_run else 0.08
    for cache in ("device", "node", "none"):
        try:
            _memory_batches(ctx, root, device, cache, per, iters, step_s)
        except Exception as e:  # noqa: BLE001
            ctx.error(f"memory bank batches cache={cache}", repr(e))


def _memory_write(ctx: StepContext, root: Path, device, shards: int, per: int, size: int) -> None:
    """Write ``shards`` shards of ``per`` random uint8 images (3 x size x size): MB/s (tar + fsync)."""
    import torch

    from nayer_scale.memory import MemoryBank

    writer = MemoryBank(root, device=device, cache="none")
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (per, 3, size, size), dtype=torch.uint8, device=device, generator=g)
    labels = torch.arange(per) % 1000
    start = time.perf_counter()
    for i in range(shards):
        writer.write(images, labels, {"epoch": 0, "batch": i})
    seconds = time.perf_counter() - start
    mb = shards * images.numel() / 1e6
    ctx.record(
        "memory_write",
        shards=shards,
        images_per_shard=per,
        image_shape=[3, size, size],
        mb=mb,
        seconds=seconds,
        mb_per_s=mb / seconds,
    )


def _memory_sample(ctx: StepContext, root: Path, device, cache: str, per: int, iters: int, image_mb: float) -> None:
    """Load the bank with ``cache`` (seconds), then ``iters`` timed ``sample(per)`` after 2 untimed."""
    import torch

    from nayer_scale.memory import MemoryBank

    bank = MemoryBank(root, device=device, cache=cache)
    start = time.perf_counter()
    bank.refresh()
    sync()
    load_s = time.perf_counter() - start
    gen = torch.Generator(device=device).manual_seed(1)
    for _ in range(2):
        bank.sample(per, gen)
    per_batch = timed(lambda _: bank.sample(per, gen), iters)
    ctx.record(
        "memory_sample",
        cache=cache,
        images=len(bank),
        load_s=load_s,
        sample_ms=1e3 * per_batch,
        images_per_s=per / per_batch,
        mb_per_s=per * image_mb / per_batch,
        device=str(device),
    )


def _memory_batches(ctx: StepContext, root: Path, device, cache: str, per: int, iters: int, step_s: float) -> None:
    """``bank.batches`` prefetching 2 ahead, each step emulated by ``step_s`` s of host sleep: the
    share of the step time spent waiting for a batch (after the 2 batches that fill the pipeline)."""
    from nayer_scale.memory import MemoryBank

    bank = MemoryBank(root, device=device, cache=cache, shm_dir=ctx.scratch / "shm")
    bank.refresh()
    wait = total = 0.0
    it = iter(bank.batches(per, range(iters + 2), prefetch=2))
    for i in range(iters + 2):
        t0 = time.perf_counter()
        next(it)
        t1 = time.perf_counter()
        time.sleep(step_s)
        if i >= 2:  # the first two fill the pipeline
            wait, total = wait + t1 - t0, total + time.perf_counter() - t0
    it.close()
    ctx.record(
        "memory_batches",
        cache=cache,
        prefetch=2,
        emulated_step_s=step_s,
        data_wait_frac=wait / max(total, 1e-9),
        device=str(device),
    )
    bank.close(remove_node_cache=True)
