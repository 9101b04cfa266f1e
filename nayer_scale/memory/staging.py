"""Student batches out of the memory bank's cache: host draw, gather, pinned copy, hand-off.

A batch goes through two steps:

1. ``Staging.stage`` (in the prefetching thread, ``nayer_scale.memory.sampler.Prefetcher``): draw
   the logical indices on the host (``draw_indices`` with the batch's seed), then
   - a device cache on a GPU: hand over the indices and labels in pinned memory (the gather runs
     on the GPU, step 2);
   - a CPU training device: gather and convert to ``dtype`` in [0, 1] (the batch is ready);
   - else: gather into pinned host memory and start its asynchronous copy to the GPU on a side
     stream, recording a CUDA event.
2. ``Staging.deliver`` (in the training thread, once per batch handed to the student): gather
   from a device cache, or make the current stream wait for the side stream's event (on the
   device: the host never waits), then convert.

Neither step makes a host-device sync, so the student step never waits on the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .caches import CachedShards
from .sampler import Prefetcher, draw_indices, host_empty

__all__ = ["Staging"]


class Staging:
    """Stages and delivers batches of the shards cached in ``cached`` on ``device``.

    Args:
        cached: the bank's cached shards (its cache and logical order).
        device: where batches are delivered.
    """

    def __init__(self, cached: CachedShards, device: torch.device) -> None:
        self.cached, self.device = cached, device
        self._stream: torch.cuda.Stream | None = None  # side stream of the host-to-GPU copies, made on first use

    def stage(self, seed: int, batch_size: int, dtype: torch.dtype | None) -> dict:
        """Prefetch work for one batch (background thread): draw on the host and gather; for a
        CUDA device start the copies on a side stream (from pinned memory: no host sync), or leave
        the gather to the device (GPU cache); for a CPU device also convert, so the student step
        finds the batch ready."""
        cache, order = self.cached.cache, self.cached.order()
        logical = draw_indices(order.size, batch_size, seed)
        labels = order.labels[logical]
        if cache.gathers_on_device:  # gathered on the GPU by deliver
            return {"logical": logical.pin_memory(), "labels": labels.pin_memory()}
        if self.device.type != "cuda":
            images = cache.gather(logical, order)
            if dtype is not None:  # images.to(dtype) / 255, in place in a huge-page buffer
                images = host_empty(images.shape, dtype).copy_(images).div_(255)
            return {"images": images, "labels": labels, "ready": True}
        images = cache.gather(logical, order, pin=True)
        labels = labels.pin_memory()
        stream = self._side_stream()
        with torch.cuda.stream(stream):
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        return {"images": images, "labels": labels, "event": event}

    def _side_stream(self) -> torch.cuda.Stream:
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        return self._stream

    def deliver(self, staged: dict, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Main-thread part of a batch: gather from a device cache, or make the current stream
        wait (on the device, not the host) for the side stream's copies; then convert.

        Returns:
            images (B, C, H, W) of ``dtype`` in [0, 1] (None: uint8 in [0, 255]) and labels (B,)
            int64, on ``device``.
        """
        labels = staged["labels"]
        if staged.get("ready"):  # CPU device: gathered and converted by the prefetching thread
            return staged["images"], labels
        if "logical" in staged:
            images = self.cached.cache.gather(staged["logical"], self.cached.order())
        else:
            images = staged["images"]
        event = staged.get("event")
        if event is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)
            images.record_stream(stream)
            labels.record_stream(stream)
        images = images.to(self.device, non_blocking=True)
        if dtype is not None:
            images = images.to(dtype) / 255
        return images, labels.to(self.device, non_blocking=True)

    def sample(
        self, batch_size: int, generator: torch.Generator | None, dtype: torch.dtype | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn with ``torch.randint`` on ``generator`` (its device; CPU if None) over the
        logical order (``MemoryBank.sample``)."""
        device = generator.device if generator is not None else torch.device("cpu")
        order = self.cached.order()
        logical = torch.randint(order.size, (batch_size,), generator=generator, device=device)
        return self.deliver(self.cached.cache.sampled(logical, order), dtype)

    def batches(
        self, batch_size: int, seeds: Iterable[int], prefetch: int, dtype: torch.dtype | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per seed, staged ``prefetch`` batches ahead in a background thread (0:
        inline), delivered here (``MemoryBank.batches``)."""
        self.cached.order()  # built before the thread starts
        with Prefetcher(lambda s: self.stage(s, batch_size, dtype), seeds, prefetch) as staged_batches:
            for staged in staged_batches:
                yield self.deliver(staged, dtype)
