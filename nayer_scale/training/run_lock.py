"""Ownership of a run folder: one job at a time, also on shared network file systems.

The main process of a job takes ``<run_dir>/job.lock`` before anything is written to the folder and
holds it for the job's whole life; the other processes of the job follow the main process's verdict.
A second job (a double ``sbatch``, a requeue racing the old job, a second terminal) is refused before
any work, with the holder named.

Mechanism, and why: the lock is a lease file created with ``O_CREAT | O_EXCL`` (atomic on local file
systems and on NFSv3 and newer, which is where run folders of clusters live) holding the holder's
host, process id and its start time, the command, the SLURM job id and restart count, and a
heartbeat that a background thread of the holder rewrites every ``heartbeat_s`` seconds (by an
atomic rename). ``flock`` / ``fcntl`` locks were not chosen: on many network file systems they are
not shared between hosts (or not implemented), and they vanish silently when the server restarts.

A lock is stale, and is taken over with a warning, when its holder is gone:
  - on this host: the process id no longer runs, or runs another program (another start time);
  - the same SLURM job: an earlier incarnation (a smaller ``SLURM_RESTART_COUNT``) of a requeued job;
  - on another host: its heartbeat is older than ``stale_s`` (default 180 s, six missed beats).
Taking over goes through a second ``O_EXCL`` file (``job.lock.break``), so that of two jobs that find
the same stale lock only one takes it. The lock is removed when the job ends (``release``); a
``SIGKILL`` leaves it for the next job to find stale.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from ..config import ConfigError
from ..storage import disk_full_named

__all__ = ["LOCK_NAME", "LockHolder", "RunFolderInUse", "RunLock", "hold_run_folder"]

LOCK_NAME = "job.lock"
_BREAK_STALE_S = 60.0  # a breaker file older than this was left by a job that died while taking over


class RunFolderInUse(ConfigError):
    """``run.run_dir`` is held by another job that is still alive; the message names it."""


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the job holding it."""

    token: str
    host: str
    pid: int
    pid_start: float  # the process's start time (psutil create_time), to tell a reused pid apart
    started_utc: str
    command: str
    job_id: str  # SLURM_JOB_ID, "" outside SLURM
    restart_count: int  # SLURM_RESTART_COUNT (0 for a first run)
    heartbeat: float  # time.time() of the last beat
    heartbeat_s: float

    @classmethod
    def of_this_process(cls, heartbeat_s: float) -> LockHolder:
        me = psutil.Process()
        return cls(
            token=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_start=me.create_time(),
            started_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            job_id=os.environ.get("SLURM_JOB_ID", ""),
            restart_count=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
            heartbeat=time.time(),
            heartbeat_s=heartbeat_s,
        )

    def describe(self) -> str:
        job = f", SLURM job {self.job_id}" if self.job_id else ""
        return (
            f"host {self.host}, process {self.pid}{job}, started {self.started_utc}, last heartbeat "
            f"{max(0.0, time.time() - self.heartbeat):.0f} s ago, command: {self.command}"
        )


def _read(path: Path) -> LockHolder | None:
    """The holder named in ``path``; None when the file is gone. A file that does not parse (its
    writer is between create and write, or it is damaged) is a holder with no details whose heartbeat
    is the file's modification time."""
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        return LockHolder(**json.loads(text))
    except (ValueError, TypeError):
        return LockHolder(
            token="",
            host="?",
            pid=-1,
            pid_start=0.0,
            started_utc="?",
            command="?",
            job_id="",
            restart_count=0,
            heartbeat=mtime,
            heartbeat_s=0.0,
        )


def _write_new(path: Path, holder: LockHolder) -> bool:
    """Create ``path`` holding ``holder`` if it does not exist (O_EXCL); False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with disk_full_named(path):  # ENOSPC / EDQUOT: one line naming the file and the free space
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(holder), f)
                f.flush()
                os.fsync(f.fileno())
        except OSError:  # a half-written lock would hold the folder until it looks stale
            path.unlink(missing_ok=True)
            raise
    return True


class RunLock:
    """The lease on one run folder (module docstring).

    Args:
        run_dir: the run folder (created if missing).
        heartbeat_s: seconds between heartbeats of the holder.
        stale_s: heartbeat age after which a holder on another host is taken to be gone.
    """

    def __init__(self, run_dir: str | os.PathLike, heartbeat_s: float = 30.0, stale_s: float = 180.0) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.holder: LockHolder | None = None
        self.taken_over: LockHolder | None = None  # the stale holder replaced by ``acquire``, if any
        self.created_dir = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stale_reason(self, holder: LockHolder) -> str | None:
        """Why ``holder`` is gone (a sentence), or None when it may still be running."""
        if holder.host == socket.gethostname() and holder.pid > 0:
            try:
                alive = abs(psutil.Process(holder.pid).create_time() - holder.pid_start) < 1.0
            except psutil.Error:
                alive = False
            return None if alive else f"process {holder.pid} no longer runs on this host"
        job, restarts = os.environ.get("SLURM_JOB_ID", ""), int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        if holder.job_id and holder.job_id == job and holder.restart_count < restarts:
            return f"it is run {holder.restart_count} of this requeued SLURM job {job} (this is run {restarts})"
        age = time.time() - holder.heartbeat
        if age > self.stale_s:
            return f"its last heartbeat is {age:.0f} s old (a live holder beats every {holder.heartbeat_s or '?'} s)"
        return None

    def acquire(self) -> RunLock:
        """Take the lock (a stale one is taken over with a RuntimeWarning) and start the heartbeat.

        Raises:
            RunFolderInUse: a live job holds it (named in the message); nothing was written.
        """
        self.created_dir = not self.path.parent.exists()  # removed again by release() if left empty
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = LockHolder.of_this_process(self.heartbeat_s)
        for _ in range(20):
            if _write_new(self.path, mine):
                self.holder = mine
                self._start_heartbeat()
                return self
            holder = _read(self.path)
            if holder is None:
                continue  # released in between: try again
            why = self.stale_reason(holder)
            if why is None:
                mine_too = holder.pid == os.getpid() and holder.host == socket.gethostname()
                raise RunFolderInUse(
                    f"{self.path.parent} is in use by "
                    + (
                        "an earlier NayerTrainer of this process that was not closed "
                        "(call its close(), or let its fit() return) "
                        if mine_too
                        else "another job "
                    )
                    + f"({holder.describe()}). Wait for it to end or stop it, or choose another run.run_dir; nothing was changed. If that "
                    f"job is gone, delete {self.path}."
                )
            if self._break(holder):
                warnings.warn(
                    f"{self.path}: taking over the lock of a job that is gone ({why}): {holder.describe()}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.taken_over = holder
            else:
                time.sleep(0.05)  # another job is taking it over: look again
        raise RunFolderInUse(
            f"{self.path} keeps changing hands: another job is starting in {self.path.parent}; "
            "choose another run.run_dir or try again"
        )

    def _break(self, stale: LockHolder) -> bool:
        """Remove the stale lock if this job wins the breaker file and the lock is still ``stale``;
        False when another job is taking it over or it changed hands meanwhile."""
        breaker = self.path.with_name(LOCK_NAME + ".break")
        try:
            if time.time() - breaker.stat().st_mtime > _BREAK_STALE_S:
                breaker.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        try:
            os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        try:
            now = _read(self.path)
            if now is None or now.token != stale.token or now.heartbeat != stale.heartbeat:
                return False  # it changed hands meanwhile: look again
            self.path.unlink(missing_ok=True)
            return True
        finally:
            breaker.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="nayer-run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.beat()

    def beat(self) -> None:
        """Rewrite the lock with a fresh heartbeat (atomic rename); warns if another job took it."""
        current = _read(self.path)
        if self.holder is None or current is None or current.token != self.holder.token:
            warnings.warn(
                f"{self.path}: this job no longer holds the run folder lock (another job took it over: "
                f"{current.describe() if current else 'the lock is gone'})",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        self.holder = LockHolder(**{**asdict(self.holder), "heartbeat": time.time()})
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.holder)))
            os.replace(tmp, self.path)
        except OSError as err:  # a full disk must not stop the job: the beat is retried
            tmp.unlink(missing_ok=True)
            warnings.warn(f"{self.path}: heartbeat not written ({err})", RuntimeWarning, stacklevel=2)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this job still holds it (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.holder is not None:
            current = _read(self.path)
            if current is not None and current.token == self.holder.token:
                self.path.unlink(missing_ok=True)
            self.holder = None
            if self.created_dir:  # a job refused at set-up leaves no empty run folder behind
                try:
                    self.path.parent.rmdir()
                except OSError:
                    pass  # not empty: the run wrote there

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def hold_run_folder(run_dir: str | os.PathLike, accelerator) -> RunLock | None:
    """Take ``run_dir``'s lock for the job on ``accelerator``'s processes: the main process takes it,
    every process learns its verdict (one collective), so that all raise together.

    Returns:
        The held lock on the main process (release it when the job ends; it is also released at
        interpreter exit), None on the other processes.
    Raises:
        RunFolderInUse: another live job holds the folder (on every process; nothing was written).
        nayer_scale.storage.DiskFullError: the lock file could not be written.
    """
    import atexit

    from accelerate.utils import broadcast_object_list

    lock, error = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(run_dir).acquire()
            atexit.register(lock.release)
        except ConfigError as err:
            error = err
    if accelerator.num_processes > 1:
        verdict = [None if error is None else str(error)]
        broadcast_object_list(verdict, from_process=0)
        if verdict[0] is not None and error is None:
            error = RunFolderInUse(verdict[0])
    if error is not None:
        raise error
    return lock
