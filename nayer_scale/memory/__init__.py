"""The memory bank of synthetic images: sharded WebDataset files with manifests
(:mod:`~nayer_scale.memory.bank`), their encodings and integrity checks
(:mod:`~nayer_scale.memory.shards`), the bound on its size (:mod:`~nayer_scale.memory.retention`),
the node-wide shared-memory cache (:mod:`~nayer_scale.memory.node_cache`), the prefetching sampler
(:mod:`~nayer_scale.memory.sampler`) and the choice of cache (:mod:`~nayer_scale.memory.cache_policy`)."""

from .bank import SHARD_PATTERN, MemoryBank
from .cache_policy import choose_memory_cache, projected_bank_bytes
from .sampler import batch_seed
from .shards import ShardError

__all__ = ["SHARD_PATTERN", "MemoryBank", "ShardError", "batch_seed", "choose_memory_cache", "projected_bank_bytes"]
