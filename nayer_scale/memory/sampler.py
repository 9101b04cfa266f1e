"""Student batches from the memory bank, drawn on the host and gathered ahead of the student step.

Batch ``step`` of an epoch draws its indices with a CPU generator seeded by
``batch_seed(seed, rank, epoch, step)`` (splitmix64, ``nayer_scale.seeding``): the draw depends on nothing but those four
numbers, so it can run any number of batches ahead, in any thread, and a resumed run draws exactly
the batches the uninterrupted one would have, with no sampler state in the checkpoint. A
``Prefetcher`` runs the gathering of the next ``depth`` batches (host cache or shard reads, into
pinned memory, then an asynchronous copy to the GPU on a side stream) in a background thread
while the student trains on the current one; the training step never waits on a host sync.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ..seeding import derive_seed

__all__ = ["Prefetcher", "batch_seed", "draw_indices", "host_empty"]


def batch_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    """Seed (in [0, 2**63)) of student batch ``step`` of ``epoch`` on process ``rank``:
    ``derive_seed(seed, rank, epoch, step) >> 1`` (``nayer_scale.seeding``)."""
    return derive_seed(seed, rank, epoch, step) >> 1


def host_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.uint8, pin: bool = False) -> torch.Tensor:
    """An uninitialised host tensor for one batch: pinned (torch's caching host allocator) when
    ``pin``, else allocated by numpy, which asks Linux for transparent huge pages on large arrays.
    A fresh ``torch.empty`` of a 224 px batch (256 x 3 x 224 x 224 uint8, 38.5 MB) takes 9,400
    page faults when first written, numpy's about 200: 18.8 ms against 5.2 ms per batch on the idle
    2-core build machine (``python -m benchmarks.memory_bank --tables host_alloc``).

    Args:
        shape: the tensor's shape.
        dtype: any torch dtype (bf16 too: the numpy buffer is bytes, viewed as ``dtype``).
        pin: page-locked memory, for asynchronous copies to a CUDA device.
    Returns:
        A CPU tensor of ``shape`` and ``dtype``, contiguous, contents undefined.
    """
    if pin:
        return torch.empty(shape, dtype=dtype, pin_memory=True)
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    return torch.from_numpy(np.empty(nbytes, dtype=np.uint8)).view(dtype).view(shape)


def draw_indices(size: int, batch_size: int, seed: int) -> torch.Tensor:
    """(batch_size,) int64 CPU tensor of indices uniform in [0, size), with replacement, from a
    fresh CPU generator seeded ``seed`` (``torch.randint``)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(size, (batch_size,), generator=generator)


class Prefetcher:
    """Yield ``fetch(key)`` for every key in order, computing up to ``depth`` results ahead in one
    background thread. ``depth=0`` calls ``fetch`` inline (same results, no thread).

    An exception in ``fetch`` is raised from the iteration at the key that caused it. Use as a
    context manager (or call ``close``) so the thread stops when the consumer stops early (e.g. a
    preemption at a safe point).
    """

    def __init__(self, fetch: Callable[[Any], Any], keys: Iterable[Any], depth: int = 2) -> None:
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.fetch, self.keys, self.depth = fetch, list(keys), depth
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        # The last few results stay referenced here, so that each is freed by this thread when it
        # falls out (freeing a large host batch returns its pages to the OS: ~5 ms for 38 MB, which
        # would otherwise land in the consumer's wait for the next batch).
        self._recent: collections.deque = collections.deque(maxlen=depth + 2)

    def _work(self) -> None:
        for key in self.keys:
            if self._stop.is_set():
                return
            try:
                item = (True, self.fetch(key))
                self._recent.append(item[1])
            except BaseException as err:  # handed to the consumer
                item = (False, err)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def __iter__(self) -> Iterator[Any]:
        if self.depth == 0:
            for key in self.keys:
                yield self.fetch(key)
            return
        self._thread = threading.Thread(target=self._work, name="nayer-prefetch", daemon=True)
        self._thread.start()
        try:
            for _ in self.keys:
                ok, value = self._queue.get()
                if not ok:
                    raise value
                yield value
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background thread (pending results are dropped)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
            self._thread = None
        self._recent.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
