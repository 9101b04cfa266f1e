"""The GPU suite's orchestrator: arguments, the steps in priority order each in its own process with
its own budget (plus what earlier steps left unused, within --total-budget), process-tree control
(a step that outlives its budget is killed with all its children), results.json and summary.md
after each step, and the device-lease plumbing: ``--print-command`` (the device tool's call for
this checkout) and ``--collect`` (what came back -> benchmarks/results/gpu/<date>-<device>/).

Stdlib only (psutil where installed): this process starts on the GPU machine before anything is
installed there and never touches the GPU.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.gpu_suite.install import build_lte, prepare_environment
from benchmarks.gpu_suite.records import append_record, read_records, slug, utc_now, write_atomic
from benchmarks.gpu_suite.render import render_summary
from benchmarks.gpu_suite.spec import (
    DEFAULT_CARRY,
    DEVICE_TIMEOUT_S,
    FASHION_CARRY,
    FILES,
    HARD_CAP_STEPS,
    MODULE,
    RESULTS_ROOT,
    ROOT,
    STEP_NAMES,
    STEPS,
    TOTAL_BUDGET_S,
)
from benchmarks.lib.provenance import git_commit


def nvidia_smi(query: str) -> str | None:
    """First line of ``nvidia-smi --query-gpu=QUERY --format=csv,noheader``, or None."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


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
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
        text=True,
        errors="replace",
        bufsize=1,
    )
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
    return {
        "rc": rc,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 2),
        "output": "".join(lines),
    }


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
    """Each step's budget in seconds: the defaults of ``STEPS`` with the ``--budget STEP=SECONDS`` items
    applied. Raises SystemExit for an unknown step or a value that is not a number."""
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


def _run_meta(args: argparse.Namespace) -> dict:
    """The run's facts for results.json: commit (``+dirty`` with --dirty), date, device, command,
    budget, Python, carry folder."""
    commit = args.commit or git_commit()
    if args.dirty and not commit.endswith("+dirty"):
        commit += "+dirty"
    meta = {
        "commit": commit,
        "dry_run": args.dry_run,
        "started": utc_now(),
        "date": datetime.date.today().isoformat(),
        "device": nvidia_smi("name") or ("CPU (dry run)" if args.dry_run else "no GPU found"),
        "command": " ".join([Path(sys.executable).name, "-m", MODULE, *sys.argv[1:]]),
        "total_budget_s": args.total_budget,
        "python": platform.python_version(),
        "carry": str(args.carry),
    }
    return meta


def _print_done(out: Path, elapsed_s: float, dry_run: bool) -> None:
    """The step table of summary.md and the files written, on stdout."""
    summary = (out / "summary.md").read_text()
    print(summary.split("\n## 1.")[0])  # the step table; the whole summary is in the file
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"gpu_suite: done in {elapsed_s} s; files in {out}: {files}")
    if not dry_run:
        print("gpu_suite: copy them into the repository with: python -m benchmarks.gpu_suite --collect <that folder>")


def orchestrate(args: argparse.Namespace) -> int:
    """Run the selected steps in priority order, each in its own process with its own budget
    (plus the time earlier steps left unused, within --total-budget, except for the hard-capped
    steps of ``HARD_CAP_STEPS``); rewrite results.json and summary.md after each."""
    start = time.monotonic()
    out = (Path(args.out) if args.out else default_out(args.dry_run)).resolve()
    args.carry = str(Path(args.carry).resolve())  # the steps run in the repository root
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # a fresh run: nothing of an earlier one mixes in
        (out / name).unlink(missing_ok=True)
    budgets = parse_budgets(args.budget)
    selected = [n for n in STEP_NAMES if n in (args.steps or STEP_NAMES)]
    meta = _run_meta(args)
    commit = meta["commit"]
    steps = [
        {"name": n, "title": t, "budget_s": budgets[n], "status": "pending" if n in selected else "not selected"}
        for n, _, t in STEPS
    ]
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
            extra = 0.0 if step["name"] in HARD_CAP_STEPS else slack  # a hard cap takes no left-over time
            allowed = min(step["budget_s"] + extra, remaining)
            if allowed < 5:
                step.update(status="not run", note="total budget spent")
                write_report(out, meta, steps)
                continue
            result = run_step(step["name"], allowed, args, out, scratch, env, commit, log)
            step.update(result, allowed_s=round(allowed, 1))
            slack = max(0.0, allowed - result["wall_s"])
            meta["elapsed_s"] = round(time.monotonic() - start, 1)
            write_report(out, meta, steps)
            print(
                f"gpu_suite: {step['name']}: {step['status']} in {step['wall_s']} s "
                f"(allowed {allowed:.0f} s){' - ' + step['note'] if step.get('note') else ''}",
                flush=True,
            )
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
    meta.update(finished=utc_now(), elapsed_s=round(time.monotonic() - start, 1))
    write_report(out, meta, steps)
    _print_done(out, meta["elapsed_s"], args.dry_run)
    return 0 if all(s["status"] in ("ok", "not selected") for s in steps) else 1


def run_step(name: str, allowed: float, args, out: Path, scratch: Path, env: dict, commit: str, log) -> dict:
    """One step in its own process (own session of the GPU): status ok / partial (it finished but
    some measurement in it failed) / failed / timeout."""
    deadline = time.time() + allowed - 3  # the step stops its own sub-processes 3 s before it is killed
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        "--run-step",
        name,
        "--out",
        out,
        "--deadline",
        f"{deadline:.1f}",
        "--carry",
        args.carry,
        "--scratch",
        scratch / name,
        "--commit",
        commit,
    ]
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
    write_atomic(
        out / "results.json",
        json.dumps({"format": 1, "meta": meta, "steps": steps, "records": records}, indent=1, default=str),
    )
    write_atomic(out / "summary.md", render_summary(meta, steps, records))


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


def device_call() -> dict:
    """The device tool's ``run`` arguments for this checkout: the command with the commit and
    whether the tree differs from it (tracked or untracked files: both travel), the carry list and
    timeout_s.

    Raises:
        SystemExit: no .gpu_carry here (run scripts/prepare_gpu_suite.sh first)."""
    if (
        not (DEFAULT_CARRY / "wheels").is_dir()
        or not any((DEFAULT_CARRY / "lte").glob("lte-*.safetensors"))
        or not any((DEFAULT_CARRY / FASHION_CARRY).glob("t10k-*.gz"))
    ):
        raise SystemExit(f"{DEFAULT_CARRY} is missing or incomplete: run bash scripts/prepare_gpu_suite.sh first")

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    sha, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
    command = f"python3 -m benchmarks.gpu_suite --commit {sha}" + (" --dirty" if status else "")
    return {"command": command, "carry": [DEFAULT_CARRY.name], "timeout_s": DEVICE_TIMEOUT_S}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (the internal --run-step / --worker flags start a step or a worker process)."""
    from benchmarks import gpu_suite as package  # its docstring is the --help text

    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=package.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", help="output folder (default: $OUT, else benchmarks/results/gpu/<date>-<device>)")
    p.add_argument("--commit", help="git commit of the tree (the GPU machine has no .git); default: git here")
    p.add_argument("--dirty", action="store_true", help="the tree had uncommitted changes (appends +dirty)")
    p.add_argument("--dry-run", action="store_true", help="every step at toy sizes on CPU (Triton interpreter)")
    p.add_argument("--steps", nargs="+", choices=STEP_NAMES, help="run only these steps (always in priority order)")
    p.add_argument("--budget", action="append", default=[], metavar="STEP=SECONDS", help="a step's time budget")
    p.add_argument("--total-budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole suite")
    p.add_argument(
        "--carry", default=str(DEFAULT_CARRY), help="folder of wheels/ and lte/ (made by scripts/prepare_gpu_suite.sh)"
    )
    p.add_argument(
        "--collect", metavar="FOLDER", help="copy a finished run's files to benchmarks/results/gpu/<date>-<device>/"
    )
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
    """``python -m benchmarks.gpu_suite``: --collect, --build-lte, --print-command, a step or worker
    process, else the whole suite (exit status 0 when every selected step is ok)."""
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
    if args.worker:  # a worker process: torch and nayer_scale from here on
        from benchmarks.gpu_suite.workers import run_worker

        return run_worker(args)
    if args.run_step:  # a step process
        from benchmarks.gpu_suite.steps import run_step_process

        return run_step_process(args)
    return orchestrate(args)
