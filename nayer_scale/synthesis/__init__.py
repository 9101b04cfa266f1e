"""Synthesis: noisy layer, generators, and the synthesis methods (NAYER, DeepInversion, Fast)."""

from .generators import Generator
from .methods import (DeepInversionSynthesizer, FastSynthesizer, NayerSynthesizer, SynthesisContext, Synthesizer,
                      build_synthesizer)
from .noisy_layer import NoisyLayer

__all__ = ["DeepInversionSynthesizer", "FastSynthesizer", "Generator", "NayerSynthesizer", "NoisyLayer",
           "SynthesisContext", "Synthesizer", "build_synthesizer"]
