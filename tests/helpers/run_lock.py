"""Helpers shared by tests/unit/test_run_lock.py and tests/integration/test_run_lock_runs.py."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace

from nayer_scale.training.run_lock import LOCK_NAME, LockHolder


def _holder(**changes) -> LockHolder:
    base = LockHolder(
        token="t0",
        host="other-node",
        pid=12345,
        pid_start=1.0,
        started_utc="2026-12-01T00:00:00+00:00",
        command="python launch/distill.py",
        job_id="",
        restart_count=0,
        heartbeat=time.time(),
        heartbeat_s=30.0,
    )
    return replace(base, **changes)


def _plant(run_dir, holder: LockHolder) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(asdict(holder)))
