"""The run-folder lock (nayer_scale.training.run_lock): one live job per folder, stale locks of dead
jobs taken over, SLURM requeues recognised.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_run_lock_runs.py."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from helpers.run_lock import _holder, _plant
from nayer_scale.training.run_lock import LOCK_NAME, RunFolderInUse, RunLock


def test_a_second_job_is_refused_with_the_holder_named(tmp_path):
    first = RunLock(tmp_path / "run").acquire()
    try:
        held = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(
            RunFolderInUse,
            match=rf"in use by .*\(host {socket.gethostname()}, process "
            rf"{os.getpid()}.*command: .*choose another run.run_dir",
        ):
            RunLock(tmp_path / "run").acquire()
    finally:
        first.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    RunLock(tmp_path / "run").acquire().release()  # free again


def test_the_heartbeat_moves_and_a_lost_lock_is_reported(tmp_path):
    lock = RunLock(tmp_path, heartbeat_s=0.05).acquire()
    try:
        first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > first
        lock._stop.set()
        lock._thread.join()
        _plant(tmp_path, _holder(token="someone-else"))
        with pytest.warns(RuntimeWarning, match="no longer holds the run folder lock"):
            lock.beat()
    finally:
        lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "someone-else"  # not ours: left alone


def test_a_reused_pid_is_not_the_holder(tmp_path):
    _plant(tmp_path, _holder(host=socket.gethostname(), pid=os.getpid(), pid_start=1.0))  # this pid, another start
    with pytest.warns(RuntimeWarning, match="no longer runs on this host"):
        RunLock(tmp_path).acquire().release()


def test_another_host_is_stale_only_after_its_heartbeat_stops(tmp_path):
    _plant(tmp_path, _holder(heartbeat=time.time() - 10))
    with pytest.raises(RunFolderInUse, match="host other-node, process 12345.*last heartbeat 10 s ago"):
        RunLock(tmp_path, stale_s=180).acquire()
    _plant(tmp_path, _holder(heartbeat=time.time() - 600))
    with pytest.warns(RuntimeWarning, match="last heartbeat is 600 s old"):
        RunLock(tmp_path, stale_s=180).acquire().release()


def test_a_requeued_slurm_job_takes_over_its_earlier_run(tmp_path, monkeypatch):
    _plant(tmp_path, _holder(job_id="4242", restart_count=0))  # fresh heartbeat, on another node
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.warns(RuntimeWarning, match="run 0 of this requeued SLURM job 4242"):
        lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["restart_count"] == 1
    lock.release()
    # another job id is another job: refused while it beats
    _plant(tmp_path, _holder(job_id="7", restart_count=0))
    with pytest.raises(RunFolderInUse, match="SLURM job 7"):
        RunLock(tmp_path).acquire()
