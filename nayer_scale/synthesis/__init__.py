"""Synthesis: noisy layer, generators, and the synthesis methods (NAYER, DeepInversion, Fast)."""

from .generators import Generator
from .labels import LabelSampler, batches_before_epoch, class_ordered_labels, rotating_class_slice
from .methods import (DeepInversionSynthesizer, FastSynthesizer, NayerSynthesizer, SynthesisContext, Synthesizer,
                      build_synthesizer)
from .noisy_layer import NoisyLayer

__all__ = ["DeepInversionSynthesizer", "FastSynthesizer", "Generator", "LabelSampler", "NayerSynthesizer", "NoisyLayer",
           "SynthesisContext", "Synthesizer", "batches_before_epoch", "build_synthesizer", "class_ordered_labels",
           "rotating_class_slice"]
