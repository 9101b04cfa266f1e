"""Typed configuration of a run: the sections (``schema``), how they check themselves
(``validate``), how fields are set from overrides, dicts and YAML files, old keys included
(``loader``), and which fields may change on resume (``resume``). The named recipes (presets)
live apart, in ``nayer_scale.recipes``.
"""

from .loader import CONVERTED_FIELDS, RENAMED_FIELDS, apply_overrides, config_from_dict, flatten, layer, read_yaml
from .resume import EXTENDABLE_FIELDS, RESUMABLE_FIELDS, check_resume_compatible
from .schema import (
    CHANNELS_LAST,
    DEMO_TEACHER,
    EVAL_DATASETS,
    GENERATOR_INPUTS,
    MIXED_PRECISIONS,
    SYNTHESIS_METHODS,
    DeepInversionConfig,
    DistillConfig,
    EvalConfig,
    FastConfig,
    LTEConfig,
    MemoryConfig,
    NayerConfig,
    NayerMethodConfig,
    QuantizationConfig,
    RunConfig,
    StudentConfig,
    SynthesisConfig,
    TeacherConfig,
)
from .validate import ConfigError, Range, Section

__all__ = [
    "CHANNELS_LAST",
    "CONVERTED_FIELDS",
    "DEMO_TEACHER",
    "EVAL_DATASETS",
    "EXTENDABLE_FIELDS",
    "GENERATOR_INPUTS",
    "MIXED_PRECISIONS",
    "RENAMED_FIELDS",
    "RESUMABLE_FIELDS",
    "SYNTHESIS_METHODS",
    "ConfigError",
    "DeepInversionConfig",
    "DistillConfig",
    "EvalConfig",
    "FastConfig",
    "LTEConfig",
    "MemoryConfig",
    "NayerConfig",
    "NayerMethodConfig",
    "QuantizationConfig",
    "Range",
    "RunConfig",
    "Section",
    "StudentConfig",
    "SynthesisConfig",
    "TeacherConfig",
    "apply_overrides",
    "check_resume_compatible",
    "config_from_dict",
    "flatten",
    "layer",
    "read_yaml",
]
