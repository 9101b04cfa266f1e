"""SIGTERM / SIGUSR1: every process checkpoints at the next safe point (mid-synthesis, mid-
distillation or the end of an epoch) and fit() returns; resuming gives bit-identical results.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_preemption_runs.py."""

from __future__ import annotations

import torch


def test_checkpoint_inside_a_phase_carries_the_phase_time_so_far():
    """A mid-epoch checkpoint is written inside the distillation phase: its time so far must be in
    the checkpoint (the session then ends), without the checkpoint's own running time."""
    import time

    from nayer_scale.training import RunClock

    timer = RunClock(torch.device("cpu"))
    timer.add("synthesis", 1.0)
    with timer.phase("distillation"):
        time.sleep(0.2)
        with timer.phase("checkpoint"):
            time.sleep(0.1)
            snap = timer.snapshot()
    assert snap["synthesis"] == 1.0 and "checkpoint" not in snap
    assert 0.2 <= snap["distillation"] < 0.28
    assert timer.seconds["distillation"] >= 0.3 and timer.seconds["checkpoint"] >= 0.1  # closed phases: as before
