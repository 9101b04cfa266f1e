"""Timing helpers of the benchmarks: device synchronisation, peak CUDA memory, and the seconds per
call of a phase (synthesis batches, student steps).

CUDA launches are asynchronous: a host clock read right after a launch measures the launch, not the
work, so every timed phase is bracketed by ``sync()`` (a host-device sync point, on purpose). On CPU
the helpers are no-ops (``sync``, ``reset_peak``) or report "no measurement" (``peak_gb``).
torch is imported where it is used, so that importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["peak_gb", "repeat_stats", "reset_peak", "spread", "sync", "timed"]


def sync() -> None:
    """Wait for the queued CUDA work of this process (nothing on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    """Start a new peak-memory window: synchronise, then reset CUDA's peak statistics (nothing on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(missing: float | None = None) -> float | None:
    """Peak CUDA memory allocated since the last ``reset_peak``, in GiB (2**30 bytes, unrounded);
    ``missing`` on CPU (None, or e.g. ``float("nan")`` for a CSV column)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else missing


def timed(fn: Callable[[int], object], repeats: int, barrier: Callable[[], object] | None = None) -> float:
    """Seconds per call of ``fn(i)`` for i in 0 .. repeats-1, the device synchronised before and
    after. ``barrier`` (e.g. ``accelerator.wait_for_everyone``) is called before the clock starts
    and after the last sync, so with several processes the slowest one sets the time.

    Raises:
        ValueError: ``repeats`` < 1."""
    if repeats < 1:
        raise ValueError(f"timed: repeats must be >= 1, got {repeats}")
    if barrier is not None:
        barrier()
    sync()
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    sync()
    if barrier is not None:
        barrier()
    return (time.perf_counter() - start) / repeats


def spread(samples: list[float]) -> dict:
    """{"median", "min", "max", "n"} of ``samples`` (any unit; the caller names it).

    Raises:
        ValueError: no samples."""
    if not samples:
        raise ValueError("spread: no samples")
    ordered = sorted(samples)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


def repeat_stats(fn: Callable[[int], object], repeats: int) -> dict:
    """Host-inclusive seconds of each call ``fn(i)``, i in 0 .. repeats-1, each bracketed by
    ``sync()`` and ``time.perf_counter`` (launch overhead, Python and host-device waits included):
    ``{"median_s", "min_s", "max_s", "repeats", "samples_s"}``.

    Raises:
        ValueError: ``repeats`` < 1."""
    if repeats < 1:
        raise ValueError(f"repeat_stats: repeats must be >= 1, got {repeats}")
    samples = []
    for i in range(repeats):
        sync()
        start = time.perf_counter()
        fn(i)
        sync()
        samples.append(time.perf_counter() - start)
    s = spread(samples)
    return {"median_s": s["median"], "min_s": s["min"], "max_s": s["max"], "repeats": repeats, "samples_s": samples}
