"""The memory bank of synthetic images, one job per file:

- :mod:`~nayer_scale.memory.bank`: ``MemoryBank``, the facade the trainer uses (write, refresh,
  release, sample, batches, state_dict / load_state_dict, close);
- :mod:`~nayer_scale.memory.manifest`: one process's manifest (format, atomic rewrites, verifying
  a listed shard, rebuilding a damaged manifest, retiring and releasing shards);
- :mod:`~nayer_scale.memory.caches`: where decoded images live, one ``Cache`` protocol with
  ``DeviceCache``, ``HostCache``, ``NodeCache`` and ``ShardReader``, chosen once per bank, and the
  logical order of the cached shards;
- :mod:`~nayer_scale.memory.staging`: student batches out of the cache (host draw, gather, pinned
  copy on a side stream, hand-off to the training thread);
- :mod:`~nayer_scale.memory.shards`: the shard files' encodings and integrity checks;
- :mod:`~nayer_scale.memory.retention`: the bound on the bank's size (FIFO / reservoir);
- :mod:`~nayer_scale.memory.node_cache`: the node-wide shared-memory files behind ``NodeCache``;
- :mod:`~nayer_scale.memory.sampler`: batch seeds, host buffers and the prefetching thread;
- :mod:`~nayer_scale.memory.cache_policy`: which cache a run gets (``memory.cache=auto``)."""

from .bank import SHARD_PATTERN, MemoryBank
from .cache_policy import choose_memory_cache, projected_bank_bytes
from .sampler import batch_seed
from .shards import ShardError

__all__ = ["SHARD_PATTERN", "MemoryBank", "ShardError", "batch_seed", "choose_memory_cache", "projected_bank_bytes"]
