"""Synthesis: noisy layer and generators."""

from .generators import Generator
from .noisy_layer import NoisyLayer

__all__ = ["Generator", "NoisyLayer"]
