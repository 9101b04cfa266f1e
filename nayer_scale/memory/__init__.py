"""Sharded WebDataset memory bank of synthetic images (see :mod:`nayer_scale.memory.bank`) and the
choice of where its decoded images live (:mod:`nayer_scale.memory.cache_policy`)."""

from .bank import MemoryBank
from .cache_policy import choose_memory_cache, projected_bank_bytes

__all__ = ["MemoryBank", "choose_memory_cache", "projected_bank_bytes"]
