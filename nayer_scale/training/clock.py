"""Run clock: wall-clock seconds per phase of a run, carried across resumed sessions.

Phases: setup, synthesis, io (memory bank, sample grids, logs), distillation, evaluation,
checkpoint. CUDA is synchronised at phase boundaries, so the times are real, not launch times.
Work lost to a crash (after the last checkpoint) is in neither session's time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

__all__ = ["RunClock"]


class RunClock:
    """Phase timer and run wall clock (Stateful: ``state_dict`` / ``load_state_dict``).

    Args:
        device: the training device (CUDA is synchronised when a phase closes).
        start: ``time.perf_counter()`` at the start of this session (default: now).
    """

    def __init__(self, device: torch.device, start: float | None = None) -> None:
        self.device = device
        self.start = time.perf_counter() if start is None else start  # moves back by earlier sessions' time
        self.seconds: dict[str, float] = {}
        self._open: list[tuple[str, float]] = []  # phases being timed (nested: a checkpoint inside distillation)

    @contextmanager
    def phase(self, name: str):
        """Time the block as phase ``name`` (nested phases count in both)."""
        start = time.perf_counter()
        self._open.append((name, start))
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._open.pop()
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def elapsed(self) -> float:
        """Wall-clock seconds of the run so far, earlier sessions included."""
        return time.perf_counter() - self.start

    def snapshot(self) -> dict[str, float]:
        """Seconds per phase including the running part of the outermost open phase (what a
        checkpoint taken at a mid-epoch safe point must carry; nested phases are inside it)."""
        seconds = dict(self.seconds)
        if self._open:
            phase, start = self._open[0]
            inner = sum(time.perf_counter() - t for _, t in self._open[1:2])  # counted by the inner phase later
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start - inner
        return seconds

    def state_dict(self) -> dict:
        return {"wall_s": self.elapsed(), "phases": self.snapshot()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint: earlier sessions' wall time and phase seconds count."""
        self.start -= state["wall_s"]
        self.seconds = dict(state["phases"])

    def accounting(self, world_size: int, device_kind: str) -> dict:
        """Where the run's time went so far.

        Returns a dict with: ``elapsed_s`` (wall-clock seconds), ``synthesis_s``, ``phases_s``
        (seconds per phase), ``num_devices`` (processes), ``device_kind`` (GPU name or "cpu"),
        ``device_hours`` = wall-clock hours x devices and ``device_hours_unit`` ("GPU-hours", or
        "CPU-hours" on CPU, where a device is one process and its share of the cores).
        """
        elapsed = self.elapsed()
        return {
            "elapsed_s": elapsed,
            "synthesis_s": self.seconds.get("synthesis", 0.0),
            "phases_s": dict(self.seconds),
            "num_devices": world_size,
            "device_kind": device_kind,
            "device_hours": elapsed * world_size / 3600.0,
            "device_hours_unit": "GPU-hours" if self.device.type == "cuda" else "CPU-hours",
        }
