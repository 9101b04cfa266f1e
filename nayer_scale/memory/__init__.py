"""Sharded WebDataset memory bank of synthetic images (see :mod:`nayer_scale.memory.bank`)."""

from .bank import MemoryBank

__all__ = ["MemoryBank"]
