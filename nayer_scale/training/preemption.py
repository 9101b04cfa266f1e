"""Preemption guard: SIGTERM / SIGUSR1 set a flag; the run checkpoints at its next safe point.

Safe points are after a synthesis batch, every ``run.safe_point_every_steps`` student steps and
at the end of an epoch. ``requested()`` is a collective (every process calls it at the same points):
a signal to any one process stops all of them at the same place.
"""

from __future__ import annotations

import signal

import torch

__all__ = ["Preempted", "PreemptionGuard"]


class Preempted(Exception):
    """Raised inside ``NayerTrainer.fit`` once every process has checkpointed after SIGTERM/SIGUSR1;
    the message is the checkpoint folder."""


class PreemptionGuard:
    """Context manager that installs the handlers and restores the previous ones on exit.

    Args:
        device: where the flag tensor of the collective lives.
        reduce_sum: sums a tensor over processes; None for one process.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, device: torch.device, reduce_sum=None) -> None:
        self.device, self.reduce_sum = device, reduce_sum
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "PreemptionGuard":
        def request_stop(signum, frame):
            self.signal = signum

        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def requested(self) -> bool:
        """True on every process when any process got a stop signal (one tiny all-reduce and a
        host read; call it at the same points on every process)."""
        flag = torch.tensor([0.0 if self.signal is None else 1.0], device=self.device)
        if self.reduce_sum is not None:
            flag = self.reduce_sum(flag)
        return flag.item() > 0
