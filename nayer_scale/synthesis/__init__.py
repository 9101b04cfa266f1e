"""Synthesis: noisy layer, generators, BN-statistics hooks, and the synthesis methods.

Files:
  noisy_layer.py  NAYER's noisy layer (label-text embeddings -> generator input, re-initialised per batch)
  generators.py   the image generator
  labels.py       pseudo-label sampling (class-ordered batches, rotating class slices)
  bn_hooks.py     BNStatsHooks: the teacher's BN-statistics loss (per-layer state, EMA, process / global scope)
  methods.py      NAYER, DeepInversion and Fast synthesizers on one shared loss
"""

from .bn_hooks import BN_STATS_SCOPES, BNStatsHooks
from .generators import Generator
from .labels import LabelSampler, batches_before_epoch, class_ordered_labels, rotating_class_slice
from .methods import (
    DeepInversionSynthesizer,
    FastSynthesizer,
    NayerSynthesizer,
    SynthesisContext,
    Synthesizer,
    build_synthesizer,
)
from .noisy_layer import NoisyLayer

__all__ = [
    "BN_STATS_SCOPES",
    "BNStatsHooks",
    "DeepInversionSynthesizer",
    "FastSynthesizer",
    "Generator",
    "LabelSampler",
    "NayerSynthesizer",
    "NoisyLayer",
    "SynthesisContext",
    "Synthesizer",
    "batches_before_epoch",
    "build_synthesizer",
    "class_ordered_labels",
    "rotating_class_slice",
]
