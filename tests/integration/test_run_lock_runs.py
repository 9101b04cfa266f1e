"""The run-folder lock (nayer_scale.training.run_lock): one live job per folder, stale locks of dead
jobs taken over, SLURM requeues recognised.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_run_lock.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import tiny_cli_args
from helpers.run_lock import _holder, _plant
from nayer_scale.training.run_lock import LOCK_NAME, RunFolderInUse, RunLock


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    code = (
        "import sys, time; from nayer_scale.training.run_lock import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderInUse, match=f"process {proc.pid}"):
            RunLock(tmp_path).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    with pytest.warns(RuntimeWarning, match=f"taking over.*process {proc.pid} no longer runs on this host"):
        lock = RunLock(tmp_path).acquire()
    assert lock.taken_over.pid == proc.pid and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_only_one_of_two_jobs_takes_over_a_stale_lock(tmp_path):
    """A stale lock found by two jobs: the breaker file lets one of them remove it; the other sees
    the winner's fresh lock and is refused."""
    _plant(tmp_path, _holder(heartbeat=time.time() - 600))
    code = (
        "import sys, time, warnings; warnings.simplefilter('ignore'); "
        "from nayer_scale.training.run_lock import RunLock, RunFolderInUse\n"
        "try:\n"
        f"    RunLock({str(tmp_path)!r}).acquire(); print('won', flush=True); time.sleep(5)\n"
        "except RunFolderInUse:\n    print('refused', flush=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["refused", "won"]


# ------------------------------------------------------------------------------------------------
# Two real jobs on one run folder (the nayer-scale command, as a second terminal or sbatch starts it)


def _job(run_dir, teacher_file, fake_test_split, lte_cache, *extra: str) -> subprocess.Popen:
    tiny = [*tiny_cli_args(teacher_file, fake_test_split, lte_cache, run_dir), "run.mixed_precision=no"]
    return subprocess.Popen(
        [sys.executable, "-m", "nayer_scale", "distill", *tiny, *extra],
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_two_jobs_at_once_one_is_refused_and_a_killed_job_is_resumed(
    tmp_path, teacher_file, fake_test_split, lte_cache
):
    run_dir, epochs = tmp_path / "run", "run.epochs=50"  # about 15 s of work: the second job starts inside it
    first = _job(run_dir, teacher_file, fake_test_split, lte_cache, epochs)
    try:
        _wait_for(run_dir / "memory", first)  # the first job is at work
        second = _job(run_dir, teacher_file, fake_test_split, lte_cache, epochs, "run.resume=true")
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first job ended before the second started: make it longer"
        assert second.returncode == 2, err[-3000:]
        assert f"in use by another job (host {socket.gethostname()}, process {first.pid}" in err
        assert len(err.strip().splitlines()) == 1  # one line, no traceback
        # the first job is killed (SIGKILL: no clean-up): its lock stays behind
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    assert (run_dir / LOCK_NAME).exists()
    # the next job (a requeue, a second try) takes the lock over and resumes the killed run
    again = _job(run_dir, teacher_file, fake_test_split, lte_cache, epochs, "run.resume=true")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert f"taking over the lock of a job that is gone (process {first.pid} no longer runs on this host)" in err
    # the refused job wrote nothing and the killed job's epochs after its last checkpoint were dropped:
    # every epoch once
    logged = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(50))
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 50
    assert not (run_dir / LOCK_NAME).exists()  # given back when the job ended
