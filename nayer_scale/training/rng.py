"""Random-number streams of one process, seeded per process and checkpointed for exact resume."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["RNGStreams"]


class RNGStreams:
    """The global torch / numpy / Python / CUDA generators plus the trainer's own ``generator``.

    Each process gets its own stream (own synthesis batches): process seed = seed * 1_000_003 +
    rank; the trainer's generator (on the training device: labels, augmentation, memory-bank
    sampling) is seeded with process seed + 17. DDP broadcasts the student's initial weights from
    process 0, so the student still starts identical everywhere. Stateful.
    """

    def __init__(self, seed: int, rank: int, device: torch.device) -> None:
        process_seed = seed * 1_000_003 + rank
        random.seed(process_seed)
        np.random.seed(process_seed % 2**32)
        torch.manual_seed(process_seed)
        self.generator = torch.Generator(device=device).manual_seed(process_seed + 17)

    def state_dict(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "trainer": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        self.generator.set_state(state["trainer"])
