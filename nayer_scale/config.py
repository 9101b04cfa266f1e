"""Typed configuration of a NAYER run: nested dataclasses, named presets, a YAML layer,
``section.key=value`` overrides, validation with messages that say what to change.

A config is built in layers, each on top of the one before (``compose_config``):

    dataclass defaults <- preset (``preset=<name>``) <- YAML file (``config=run.yaml``)
                       <- ``section.key=value`` overrides (``synthesis.nayer.generator_input=noise``)

Infrastructure (``run``) is kept apart from the method's hyper-parameters (``synthesis``,
``distill``). ``synthesis`` holds what every synthesis method shares; the fields of one method live
in its sub-config: ``synthesis.nayer``, ``synthesis.deepinversion`` and ``synthesis.fast``. Every knob
of the published code has a descriptive name here:

    published flag   field
    --------------   ----------------------------------------------------------------
    oh               synthesis.ce_loss_weight
    bn               synthesis.bn_loss_weight
    adv              synthesis.adv_loss_weight
    bn_mmt           synthesis.bn_momentum
    g_steps          synthesis.num_generator_steps
    g_loops          synthesis.batches_per_epoch
    gwp_loops        synthesis.warmup_batches_per_epoch
    g_life           synthesis.generator_life_epochs
    lr_g             synthesis.generator_lr
    synthesis_batch  synthesis.batch_size
    kd_steps         distill.steps_per_epoch
    T                distill.temperature
    warmup           run.warmup_epochs
    lr (DI pixels)   synthesis.deepinversion.pixel_lr
    tv / l2 (DI)     synthesis.deepinversion.tv_loss_weight / synthesis.deepinversion.l2_loss_weight
    lr_z (Fast)      synthesis.fast.latent_lr
    is_maml (Fast)   synthesis.fast.meta_learning

``synthesis.method`` picks the synthesis algorithm: "nayer" (default), or one of the two baselines of
the paper's Table 2 that share the teacher hooks, losses, memory bank, student training and
evaluation: "deepinversion" (Yin et al., CVPR 2020) and "fast" (Fang et al., AAAI 2022). Presets
``<dataset>_deepinversion`` / ``<dataset>_fast`` carry their published hyper-parameters.

Choices are ``Literal`` annotations and numeric ranges are declared once on each field
(``positive``, ``at_least``, ``in_range``); one generic walker checks both for every section.
The flat names of config v1 (``synthesis.generator_input``, ``synthesis.tv_loss_weight``,
``synthesis.latent_lr``, ... see ``RENAMED_FIELDS``) are still accepted for one release, with a
DeprecationWarning naming the new key.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

__all__ = [
    "ConfigError",
    "DeepInversionConfig",
    "DistillConfig",
    "EXTENDABLE_FIELDS",
    "EvalConfig",
    "FastConfig",
    "LTEConfig",
    "MemoryConfig",
    "NayerConfig",
    "NayerMethodConfig",
    "PRESETS",
    "RENAMED_FIELDS",
    "RESUMABLE_FIELDS",
    "RunConfig",
    "StudentConfig",
    "SynthesisConfig",
    "TeacherConfig",
    "SYNTHESIS_METHODS",
    "apply_overrides",
    "as_deepinversion",
    "as_fast",
    "check_resume_compatible",
    "compose_config",
    "config_from_dict",
    "get_preset",
    "preset",
    "read_yaml",
]


SynthesisMethod = Literal["nayer", "deepinversion", "fast"]
EvalDataset = Literal["fashion_mnist", "cifar10", "cifar100", "imagenet", "hf", "none"]
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]  # resolved by nayer_scale.precision
ChannelsLast = Literal["auto", "true", "false"]
GeneratorInput = Literal["lte", "noise", "onehot", "lte_cat_noise", "lte_plus_noise"]
NoisyLayerKind = Literal["k_to_1", "one_to_one", "none"]
NoisyLayerInit = Literal["normal", "kaiming_uniform"]
MetaLearning = Literal["fomaml", "reptile"]
KernelChoice = Literal["auto", "triton", "reference"]
BNStatsScope = Literal["process", "global"]  # BN statistics of each process's batch, or of all processes' union
MemoryCache = Literal["auto", "device", "cpu", "node", "none"]
Retirement = Literal["fifo", "reservoir"]
ShardEncoding = Literal["raw", "png", "webp", "webp_lossy"]

# The choices as tuples, for modules that check or list them (nayer_scale.precision).
SYNTHESIS_METHODS = typing.get_args(SynthesisMethod)
EVAL_DATASETS = typing.get_args(EvalDataset)
MIXED_PRECISIONS = typing.get_args(MixedPrecision)
CHANNELS_LAST = typing.get_args(ChannelsLast)
GENERATOR_INPUTS = typing.get_args(GeneratorInput)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to change."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_scale(scale: tuple[float, ...], name: str) -> None:
    _check(len(scale) == 0 or (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1),
           f"{name} takes two area fractions 0 < min <= max <= 1 (e.g. 0.08,1), or nothing; got {scale}")


# ----------------------------------------------------------------------------------------------
# Declared ranges of numeric fields, checked by the generic walker (``_check_fields``).

@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric field, or of every item of a tuple field.

    ``low`` / ``high`` of None mean unbounded; ``low_open`` / ``high_open`` exclude the bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


def _ranged(default: Any, allowed: Range) -> Any:
    return field(default=default, metadata={"range": allowed})


def positive(default: Any) -> Any:
    """A dataclass field with ``default`` whose value (or every item of it) must be > 0."""
    return _ranged(default, Range(0, None, low_open=True))


def at_least(low: float, *, default: Any) -> Any:
    """A dataclass field with ``default`` whose value (or every item of it) must be >= ``low``."""
    return _ranged(default, Range(low, None))


def in_range(low: float, high: float, *, default: Any, high_open: bool = False) -> Any:
    """A dataclass field with ``default`` whose value (or every item) lies in [low, high] (or [low, high))."""
    return _ranged(default, Range(low, high, high_open=high_open))


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:  # checked as a choice
        return True
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, (tuple, list)) and all(_type_ok(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return f"list of {_type_name(typing.get_args(annotation)[0])}s"
    return getattr(annotation, "__name__", str(annotation))


def _check_field(f: dataclasses.Field, value: Any, annotation: Any, key: str) -> None:
    """One field against its declaration: type, Literal choice, tuple length, declared range."""
    _check(_type_ok(value, annotation), f"{key} takes a {_type_name(annotation)}, got {value!r}")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        _check(value in args, f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin is tuple and Ellipsis not in args:
        _check(len(value) == len(args), f"{key} takes {len(args)} values (e.g. {key}=0.5,0.999), got {value!r}")
    allowed = f.metadata.get("range")
    if allowed is not None:
        items = value if isinstance(value, (tuple, list)) else (value,)
        several = isinstance(value, (tuple, list))
        _check(all(v in allowed for v in items),
               f"{'every value of ' if several else ''}{key} must be {allowed}, got {value!r}: "
               f"set {key} to {'values' if several else 'a value'} {allowed}")


def _check_fields(section: _Section) -> None:
    """Check every field of ``section`` against its declaration, recursing into sub-configs."""
    hints = _hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, _Section):
            value.validate()
        else:
            _check_field(f, value, hints[f.name], f"{section.SECTION}.{f.name}")


class _Section:
    """Shared behaviour of the config sections: ``validate`` checks every field against its
    declaration (Literal choices, tuple lengths, declared ranges), then the cross-field rules of
    ``check_relations``. ``SECTION`` is the dotted prefix that messages name."""

    SECTION: ClassVar[str] = ""

    def validate(self) -> _Section:
        """Check the section; raises ConfigError naming the field, its value and what to change."""
        _check_fields(self)
        self.check_relations()
        return self

    def check_relations(self) -> None:
        """Rules that tie several fields together (none by default)."""


# ----------------------------------------------------------------------------------------------
# The sections.

@dataclass
class TeacherConfig(_Section):
    """The pretrained teacher: a zoo name or ``package.module:factory``, its weights (a local
    safetensors or .pth file, or a hub spec ``torchvision:resnet50.IMAGENET1K_V2`` /
    ``hf-hub:timm/resnet50.tv_in1k``, downloaded once when the machine is online), its input
    normalisation and its class names. ``arch=hf:<hub id or folder>`` is a transformers image
    classifier or a nayer-scale export: fields left at their defaults are filled from the folder at
    start-up and conflicting ones refused (``nayer_scale.hf_models.resolve_hf_teacher``)."""

    SECTION: ClassVar[str] = "teacher"

    arch: str = "resnet20"
    weights: str = ""
    class_names: str = "fashion_mnist"  # a dataset key (see nayer_scale.lte) or a .txt file, one name per line
    mean: tuple[float, ...] = in_range(0.0, 1.0, default=(0.2860,))  # of [0, 1] pixels, per channel
    std: tuple[float, ...] = positive((0.3530,))
    in_channels: int = positive(1)
    image_size: int = at_least(8, default=28)  # pixels

    def check_relations(self) -> None:
        _check(bool(self.arch), "teacher.arch is empty: give a zoo name (e.g. resnet20) or package.module:factory")
        _check(self.class_names != "id2label" or self.arch.startswith("hf:"),
               "teacher.class_names=id2label (the names in a model folder's config.json) needs teacher.arch=hf:<hub id "
               "or folder>: set teacher.class_names to a dataset key or a .txt file")
        _check(len(self.mean) == len(self.std) == self.in_channels,
               f"teacher.mean {self.mean} and teacher.std {self.std} need one value per input channel "
               f"(teacher.in_channels={self.in_channels})")


@dataclass
class StudentConfig(_Section):
    """The student architecture (a zoo name or ``package.module:factory``), trained from scratch;
    or, with ``quantization`` = ``w{B}a{B}`` (data-free quantization, NAYER Table 3), a
    fake-quantized copy of the teacher initialised from its weights (``nayer_scale.quantization``):
    B-bit per-channel weights and B-bit per-tensor activations, the first and last layers at 8 bits
    (``quantization_keep_ends_8bit``), BatchNorm folded first where the graph allows
    (``quantization_fold_bn``)."""

    SECTION: ClassVar[str] = "student"

    arch: str = "resnet8"
    quantization: str = "none"  # "none" or w{B}a{B}, B in 2..8: w8a8, w6a6, w4a8, w4a4, ...
    quantization_keep_ends_8bit: bool = True  # first and last layer at 8 bits (ZeroQ / GDFQ convention)
    quantization_fold_bn: bool = True  # fold Conv2d -> BatchNorm2d pairs before quantizing

    def check_relations(self) -> None:
        import re

        _check(bool(self.arch), "student.arch is empty")
        _check(self.quantization == "none" or re.fullmatch(r"w[2-8]a[2-8]", self.quantization) is not None,
               f"student.quantization={self.quantization!r} is not w{{B}}a{{B}} with bit widths B in 2..8: "
               "set it to e.g. w8a8, w6a6, w4a8 or w4a4, or to none (a float student)")


@dataclass
class LTEConfig(_Section):
    """Label-text embeddings: text encoder spec ("minilm", "minilm:/folder", "clip:<id or folder>",
    "hashed[:dim]" for the weight-free hashed bag of words),
    prompt template (key or format string with {name}/{index}) and the cache folder."""

    SECTION: ClassVar[str] = "lte"

    encoder: str = "minilm"
    template: str = "photo_of"
    cache_dir: str = "~/.cache/nayer-scale/lte"

    def check_relations(self) -> None:
        _check(bool(self.encoder), "lte.encoder is empty: use minilm, minilm:/path, clip:<id or path> or hashed")


@dataclass
class NayerMethodConfig(_Section):
    """NAYER-only synthesis fields: the generator input and the noisy layer, i.e. the ablation
    switches of the paper's Table 4 (the defaults are the method), and the shared generator."""

    SECTION: ClassVar[str] = "synthesis.nayer"

    generator_input: GeneratorInput = "lte"
    noise_beta: float = at_least(0.0, default=1.0)  # beta of "lte_plus_noise": e_y + beta * z
    noisy_layer: NoisyLayerKind = "k_to_1"  # one linear per copy of the K classes, one per sample, or none
    noisy_layer_reinit: bool = True  # False: the noisy linears are learned on, never re-drawn
    noisy_layer_init: NoisyLayerInit = "normal"  # "normal" is the published one
    noisy_layer_batchnorm: bool = True
    shared_generator: bool = False  # one generator for all processes: same initial weights, gradients all-reduced


@dataclass
class DeepInversionConfig(_Section):
    """DeepInversion-only fields: Adam on the pixels of each batch and the image priors (published
    values: DataFree toolbox CIFAR scripts and NVlabs; see ``as_deepinversion``)."""

    SECTION: ClassVar[str] = "synthesis.deepinversion"

    pixel_lr: float = positive(0.1)  # Adam learning rate of the pixels
    pixel_betas: tuple[float, float] = in_range(0.0, 1.0, default=(0.5, 0.99), high_open=True)
    tv_loss_weight: float = at_least(0.0, default=0.0)  # weight of the total-variation (l2) image prior
    l2_loss_weight: float = at_least(0.0, default=0.0)  # weight of the l2 norm of the (normalised) pixels


@dataclass
class FastConfig(_Section):
    """Fast-only fields: the per-batch random inputs and the meta-learning rule."""

    SECTION: ClassVar[str] = "synthesis.fast"

    latent_lr: float = positive(0.01)  # learning rate of the per-batch random inputs z ("lr_z")
    meta_learning: MetaLearning = "fomaml"  # "fomaml" (published default, is_maml=1) or "reptile"


@dataclass
class SynthesisConfig(_Section):
    """Synthesis method, generator and synthesis-loss hyper-parameters shared by the methods (NAYER
    Alg. 1, inner loop); each method's own fields are in ``nayer``, ``deepinversion`` and ``fast``.
    For "deepinversion", ``num_generator_steps`` is the number of pixel updates per batch (the pixel
    optimiser is ``deepinversion.pixel_lr`` / ``pixel_betas``); for "fast" the generator fields
    apply to the meta-learned generator fed with ``noise_dim`` random inputs."""

    SECTION: ClassVar[str] = "synthesis"

    method: SynthesisMethod = "nayer"
    batch_size: int = positive(400)  # images per synthesis batch
    num_generator_steps: int = positive(30)  # generator/noisy-layer (or pixel) updates per synthesis batch
    batches_per_epoch: int = positive(2)  # synthesis batches per epoch after warm-up
    warmup_batches_per_epoch: int = at_least(0, default=10)  # synthesis batches per warm-up epoch
    generator_lr: float = positive(4e-3)
    generator_betas: tuple[float, float] = in_range(0.0, 1.0, default=(0.5, 0.999), high_open=True)
    generator_width: int = positive(64)
    generator_life_epochs: int = positive(10)  # the generator is re-created every this many epochs
    noise_dim: int = positive(1000)
    ce_loss_weight: float = at_least(0.0, default=0.5)
    bn_loss_weight: float = at_least(0.0, default=10.0)
    adv_loss_weight: float = at_least(0.0, default=1.33)
    bn_momentum: float = in_range(0.0, 1.0, default=0.9, high_open=True)
    first_bn_multiplier: float = at_least(0.0, default=1.0)
    # "process" (published): each process matches the teacher's BN statistics on its own synthesis
    # batch; "global": on the union of all processes' batches (one all-reduce per generator step)
    bn_stats_scope: BNStatsScope = "process"
    crop_padding: int = at_least(0, default=4)  # pixels
    flip: bool = True
    roll_jitter: int = at_least(0, default=0)  # pixels; random roll of up to this many per axis (ImageNet: size // 8)
    resized_crop_scale: tuple[float, ...] = ()  # (min, max) area of a random resized crop instead of the padded crop
    nayer: NayerMethodConfig = field(default_factory=NayerMethodConfig)
    deepinversion: DeepInversionConfig = field(default_factory=DeepInversionConfig)
    fast: FastConfig = field(default_factory=FastConfig)

    def check_relations(self) -> None:
        _check_scale(self.resized_crop_scale, "synthesis.resized_crop_scale")
        _check(not self.nayer.shared_generator or self.method == "nayer",
               "synthesis.nayer.shared_generator applies to synthesis.method=nayer only: set it to false")


@dataclass
class DistillConfig(_Section):
    """Student training on the memory bank (NAYER Alg. 1, student loop)."""

    SECTION: ClassVar[str] = "distill"

    batch_size: int = positive(512)
    steps_per_epoch: int = positive(400)
    lr: float = positive(0.2)
    lr_min: float = at_least(0.0, default=2e-4)  # cosine schedule floor
    momentum: float = in_range(0.0, 1.0, default=0.9, high_open=True)
    weight_decay: float = at_least(0.0, default=1e-4)
    temperature: float = positive(20.0)
    crop_padding: int = at_least(0, default=4)
    flip: bool = True
    resized_crop_scale: tuple[float, ...] = ()  # (min, max) area of a random resized crop (ImageNet: 0.08, 1)

    def check_relations(self) -> None:
        _check_scale(self.resized_crop_scale, "distill.resized_crop_scale")
        _check(self.lr_min <= self.lr, f"distill.lr_min ({self.lr_min}) must be in [0, distill.lr={self.lr}]")


@dataclass
class MemoryConfig(_Section):
    """The memory bank of synthetic images (``nayer_scale.memory``): its size bound, shard
    encoding and the prefetching of student batches. Where its decoded images live is
    ``run.memory_cache``."""

    SECTION: ClassVar[str] = "memory"

    # images kept over all processes (each keeps max_images // processes of its own); 0 = all, as
    # published. When full, whole shards retire (paper Table 5: a bounded memory keeps the accuracy).
    max_images: int = at_least(0, default=0)
    retirement: Retirement = "fifo"  # "fifo": the oldest shards (the paper's buffer); "reservoir": uniform over the history
    encoding: ShardEncoding = "raw"  # raw | png | webp (lossless); "webp_lossy" only when asked for by name
    webp_quality: int = in_range(1, 100, default=90)  # only for encoding=webp_lossy
    prefetch: int = at_least(0, default=2)  # student batches gathered ahead in a background thread; 0 = inline


@dataclass
class EvalConfig(_Section):
    """Held-out real evaluation data. Only the *test* split is ever read by a distillation run."""

    SECTION: ClassVar[str] = "eval"

    dataset: EvalDataset = "fashion_mnist"
    # folder of the dataset files; "" searches the standard places. imagenet: an ImageFolder of the
    # val split (one folder per class, sorted = class index) or webdataset val shards (folder of
    # .tar, one .tar, or a brace pattern), required.
    root: str = ""
    batch_size: int = positive(250)  # 2x faster than 1000 per image on a 2-core CPU (ResNet-20: 8.6 vs 15.0 s per 10k)
    every_epochs: int = positive(1)  # evaluate the student every this many epochs after warm-up (and at the end)
    resize: int = at_least(0, default=0)  # imagenet, hf: shorter side before the centre crop; 0 = image_size / 0.875
    num_workers: int = at_least(0, default=8)  # imagenet, hf: decoding workers per process
    # hf (Hugging Face ``datasets``, nayer_scale/data/hf.py): a hub id, a save_to_disk folder, a parquet /
    # arrow file or glob, or an image folder; "" split / columns = detected (test or validation split,
    # the Image column, the ClassLabel column).
    hf_path: str = ""
    hf_split: str = ""
    hf_image_column: str = ""
    hf_label_column: str = ""
    hf_streaming: bool = False  # stream a hub set instead of downloading the split first
    hf_match_class_names: bool = True  # false: the set's label i is the teacher's class i under another name

    def check_relations(self) -> None:
        _check(self.dataset != "imagenet" or bool(self.root),
               "eval.dataset=imagenet needs eval.root: an ImageFolder of the val split or webdataset val shards")
        _check(self.dataset != "hf" or bool(self.hf_path),
               "eval.dataset=hf needs eval.hf_path: a hub id (e.g. ILSVRC/imagenet-1k), a save_to_disk folder, "
               "a parquet / arrow file or glob, or an image folder")


@dataclass
class RunConfig(_Section):
    """Infrastructure: run folder, schedule length, precision, resume, logging."""

    SECTION: ClassVar[str] = "run"

    run_dir: str = "runs/nayer"
    epochs: int = positive(120)  # total, warm-up included
    warmup_epochs: int = at_least(0, default=20)
    seed: int = at_least(0, default=0)
    # "auto" (by capability: bf16 on GPUs that have it, else fp16; bf16 on CPUs with AMX-BF16 /
    # AVX512-BF16, else fp32), "no", "bf16" or "fp16" (see nayer_scale.precision)
    mixed_precision: MixedPrecision = "auto"
    channels_last: ChannelsLast = "auto"  # "auto": on (measured faster on GPU and CPU, fp32 and bf16)
    resume: bool = False  # continue from run_dir's latest checkpoint
    keep_checkpoints: int = at_least(1, default=2)
    tensorboard: bool = False
    progress: bool = True  # tqdm bars on the main process
    grid_per_class: int = positive(8)  # images per class in the per-epoch sample grid
    cpu: bool = False  # force CPU even when a GPU is present
    cpu_threads: int = at_least(0, default=0)  # torch threads per process on CPU; 0 = cores / processes on this node
    kernels: KernelChoice = "auto"  # "auto": Triton on CUDA, else the PyTorch reference; env NAYER_KERNELS wins
    compile: bool = False  # torch.compile the student and the teacher's KD forward (first steps pay the compile time)
    # SIGTERM / SIGUSR1 are acted on at the next safe point: after a synthesis batch, every this many
    # student steps, and at the end of an epoch (each check is one tiny all-reduce).
    safe_point_every_steps: int = positive(50)
    # Memory-bank cache: "auto" (the training device when the whole bank fits, else one copy per node
    # in shared memory, else none), "device", "cpu" (per process), "node" (/dev/shm, one copy per
    # node) or "none" (samples are read from the shard files on every step).
    memory_cache: MemoryCache = "auto"
    # cap on the cache per process in GiB; 0 = a quarter of the GPU's memory, or half of this
    # process's share of the available host RAM
    memory_cache_gb: float = at_least(0.0, default=0.0)

    def validate(self) -> RunConfig:
        """Check the section (configs written before "auto" stored channels_last as a bool)."""
        if isinstance(self.channels_last, bool):
            self.channels_last = "true" if self.channels_last else "false"
        self.channels_last = str(self.channels_last).lower()
        return super().validate()

    def check_relations(self) -> None:
        _check(self.warmup_epochs < self.epochs,
               f"run.warmup_epochs ({self.warmup_epochs}) must be in [0, run.epochs={self.epochs})")


@dataclass
class NayerConfig:
    """The whole run: teacher, student, LTE, synthesis, distillation, evaluation, infrastructure."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    lte: LTEConfig = field(default_factory=LTEConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> NayerConfig:
        """Check every section; raises ConfigError naming the field to change."""
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        _check(self.student.quantization == "none" or self.student.arch == self.teacher.arch,
               f"student.quantization={self.student.quantization} quantizes a copy of the teacher, but "
               f"student.arch={self.student.arch!r} differs from teacher.arch={self.teacher.arch!r}: "
               f"set student.arch={self.teacher.arch}")
        return self

    def to_dict(self) -> dict:
        """Nested plain dict: section -> key -> value (sub-configs nested, tuples kept)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        """The whole config as YAML (sections, sub-configs nested, tuples as lists); given back
        through ``config=<file>`` (``compose_config``) it reproduces this config exactly."""
        header = "# nayer-scale config (NayerConfig.to_yaml); run it with  config=<this file>\n"
        return header + yaml.safe_dump(_plain(self.to_dict()), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: what ``yaml.safe_dump`` accepts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Fields of config v1 that moved into a method's sub-config; accepted with a DeprecationWarning.

#: old flat key -> its place now (pixel_lr / pixel_betas are new in v2: see ``as_deepinversion``).
RENAMED_FIELDS: dict[str, str] = {
    f"synthesis.{name}": f"synthesis.{sub}.{name}"
    for sub, names in (
        ("nayer", ("generator_input", "noise_beta", "noisy_layer", "noisy_layer_reinit", "noisy_layer_init",
                   "noisy_layer_batchnorm", "shared_generator")),
        ("deepinversion", ("tv_loss_weight", "l2_loss_weight")),
        ("fast", ("latent_lr", "meta_learning")))
    for name in names
}


def _warn_renamed(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} is deprecated and will be removed: use {new}", DeprecationWarning, stacklevel=stacklevel)


def _current_key(path: str) -> str:
    """``path``, or its new place (with a DeprecationWarning) for a key of config v1."""
    new = RENAMED_FIELDS.get(path)
    if new is None:
        return path
    _warn_renamed(path, new, stacklevel=5)
    return new


def _renamed_attribute(old: str, new: str) -> property:
    sub, name = new.split(".")[1:]

    def get(self: SynthesisConfig) -> Any:
        _warn_renamed(old, new, stacklevel=3)
        return getattr(getattr(self, sub), name)

    def put(self: SynthesisConfig, value: Any) -> None:
        _warn_renamed(old, new, stacklevel=3)
        setattr(getattr(self, sub), name, value)

    return property(get, put, doc=f"Deprecated alias of ``{new}``.")


for _old, _new in RENAMED_FIELDS.items():  # cfg.synthesis.generator_input still reads and writes, and warns
    setattr(SynthesisConfig, _old.split(".", 1)[1], _renamed_attribute(_old, _new))
del _old, _new


# ----------------------------------------------------------------------------------------------
# Setting fields by dotted path: command-line overrides, dicts (checkpoints), YAML files.

def _locate(config: NayerConfig, path: str) -> tuple[Any, str]:
    """The object holding the field at dotted ``path`` and the field's name.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones).
    """
    parts, owner = path.split("."), config
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(owner)]
        if part not in names:
            if depth == 0:
                raise ConfigError(f"unknown config section {part!r} in {path!r}; sections: {', '.join(names)}")
            raise ConfigError(f"unknown key {path!r}; {'.'.join(parts[:depth])} has: {', '.join(sorted(names))}")
        if depth == len(parts) - 1:
            return owner, part
        owner = getattr(owner, part)
        if not dataclasses.is_dataclass(owner):
            raise ConfigError(f"{'.'.join(parts[:depth + 1])} is a value, not a section: unknown key {path!r}")
    raise AssertionError("unreachable")


def _convert(value: str, annotation: Any, key: str) -> Any:
    """Parse a command-line string into the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is Literal:  # the choice is checked by validate()
        return value
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(_convert(v.strip(), item_type, key) for v in value.split(",") if v.strip())
    if annotation is bool:
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} takes true/false, got {value!r}")
    try:
        return annotation(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key} takes a {annotation.__name__}, got {value!r}") from err


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """A value read from JSON / YAML / a dict into the field's declared type (lists -> tuples,
    ints -> floats, strings parsed as on the command line, e.g. YAML 1.1 reads 4e-3 as a string)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str(value).lower() if isinstance(value, bool) else value  # YAML reads true / false unquoted
    if isinstance(value, str) and annotation is not str:
        return _convert(value, annotation, key)
    if origin is tuple and isinstance(value, (list, tuple)):
        item_type = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item_type, key) for v in value)
    if annotation is float and _type_ok(value, float):
        return float(value)
    if origin is not tuple and _type_ok(value, annotation):
        return value
    raise ConfigError(f"{key} takes a {_type_name(annotation)}, got {value!r}")


def _assign(config: NayerConfig, path: str, value: Any, *, text: bool) -> None:
    """Set the field at dotted ``path``; ``text``: parse a command-line string, else coerce."""
    path = _current_key(path)
    owner, name = _locate(config, path)
    current = getattr(owner, name)
    if dataclasses.is_dataclass(current):
        if not text and value in (None, {}):  # an empty section in a file
            return
        keys = ", ".join(f"{path}.{f.name}" for f in dataclasses.fields(current))
        raise ConfigError(f"{path} is a section, not a value; set its keys: {keys}")
    annotation = _hints(type(owner))[name]
    setattr(owner, name, _convert(value, annotation, path) if text else _coerce(value, annotation, path))


def _flatten(data: dict, prefix: str = "") -> typing.Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a nested mapping."""
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from _flatten(value, path)
        else:
            yield path, value


def apply_overrides(config: NayerConfig, overrides: list[str]) -> NayerConfig:
    """Apply ``section.key=value`` / ``section.sub.key=value`` strings (e.g. ``synthesis.bn_loss_weight=5``,
    ``synthesis.nayer.generator_input=noise``) in order. Keys of config v1 (``RENAMED_FIELDS``) are
    mapped to their new place with a DeprecationWarning.

    Raises:
        ConfigError: for a malformed item, an unknown section or key, or a value of the wrong type.
    """
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path, value = item.split("=", 1)
        _assign(config, path, value, text=True)
    return config


_V1_SYNTHESIS_KEYS = frozenset(old.split(".", 1)[1] for old in RENAMED_FIELDS)


def _from_v1_deepinversion(data: dict) -> dict:
    """``data`` with the pixel optimiser of a DeepInversion run moved to its v2 place when the
    synthesis section is a whole v1 one (a v1 ``to_dict()``, e.g. in a checkpoint): config v1 kept
    it in ``synthesis.generator_lr`` / ``generator_betas``."""
    s = data.get("synthesis")
    if not isinstance(s, dict) or s.get("method") != "deepinversion" or not _V1_SYNTHESIS_KEYS <= s.keys():
        return data
    s, pixel = dict(s), {}
    for old, new in (("generator_lr", "pixel_lr"), ("generator_betas", "pixel_betas")):
        if old in s:
            pixel[new] = s.pop(old)
            _warn_renamed(f"synthesis.{old} of a v1 DeepInversion config", f"synthesis.deepinversion.{new}", 4)
    return {**data, "synthesis": {**s, "deepinversion": {**s.get("deepinversion", {}), **pixel}}}


def config_from_dict(data: dict, base: NayerConfig | None = None) -> NayerConfig:
    """A NayerConfig from a nested mapping: ``to_dict()`` output (e.g. the copy stored in a
    checkpoint) or a YAML file's sections. Missing keys keep their value in ``base`` (default: the
    dataclass defaults), which is changed in place. Keys of config v1 (``RENAMED_FIELDS``) are
    mapped to their new place with a DeprecationWarning; so is the pixel lr / betas of a whole v1
    DeepInversion section (v1 kept them in ``synthesis.generator_lr`` / ``generator_betas``). Not
    validated.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones), a wrong type.
    """
    config = NayerConfig() if base is None else base
    if not isinstance(data, dict):
        raise ConfigError(f"a config is a mapping of sections, got {type(data).__name__}")
    for path, value in _flatten(_from_v1_deepinversion(data)):
        _assign(config, path, value, text=False)
    return config


def read_yaml(path: str | Path) -> dict:
    """The mapping of a YAML config file: ``section: {key: value}`` (sub-configs nested), and
    optionally ``preset: <name>``.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not YAML, or not a mapping.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist: give config=<path of a YAML file>")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (run:, synthesis:, ...), "
                          f"got a {type(data).__name__}")
    return data


def compose_config(default_preset: str, *, preset_name: str | None = None, config_file: str | Path | None = None,
                   overrides: typing.Sequence[str] = ()) -> NayerConfig:
    """The validated config: preset, then the YAML file's sections, then the overrides on top.

    The preset is ``preset_name`` when given (command line ``preset=``), else the YAML file's
    ``preset:`` key, else ``default_preset`` (the launch script's).

    Raises:
        ConfigError: an unknown preset, section or key, a bad value, or a failed validation.
        FileNotFoundError: ``config_file`` does not exist.
    """
    data = read_yaml(config_file) if config_file is not None else {}
    from_file = data.pop("preset", None)
    if from_file is not None and not isinstance(from_file, str):
        raise ConfigError(f"config file {config_file}: preset takes a preset name, got {from_file!r}")
    config = get_preset(preset_name or from_file or default_preset)
    try:
        config_from_dict(data, base=config)
    except ConfigError as err:
        raise ConfigError(f"config file {config_file}: {err}") from None
    return apply_overrides(config, list(overrides)).validate()


# ----------------------------------------------------------------------------------------------
# Resume: which fields may change between the sessions of one run.

#: Fields (fnmatch patterns) that may change when a run is resumed; every other change is refused.
RESUMABLE_FIELDS: tuple[str, ...] = (
    "eval.*", "run.resume", "run.progress", "run.tensorboard", "run.keep_checkpoints", "run.safe_point_every_steps",
    "run.grid_per_class", "run.cpu_threads", "run.memory_cache", "run.memory_cache_gb", "run.kernels",
    "run.compile", "run.run_dir", "memory.prefetch", "memory.encoding", "memory.webp_quality",
)
#: Fields that may grow (not shrink) when a run is resumed: a longer schedule extends the run.
EXTENDABLE_FIELDS: tuple[str, ...] = ("run.epochs",)


def _normalised(data: dict) -> dict:
    """``data`` (a ``to_dict()``, possibly of config v1) as a flat dict of the current layout."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return dict(_flatten(config_from_dict(data).to_dict()))


def check_resume_compatible(saved: dict, now: dict) -> list[str]:
    """Compare a checkpoint's config (``saved``, its ``to_dict()``; config v1 layouts are mapped)
    with this session's (``now``) field by field.

    Returns:
        The allowed changes as ``"field: old -> new"`` strings (for the log): fields matching
        ``RESUMABLE_FIELDS``, and ``EXTENDABLE_FIELDS`` that did not go down.
    Raises:
        ConfigError: naming every other changed field with both values.
    """
    old, new = _normalised(saved), _normalised(now)
    allowed, refused = [], []
    for key, value in new.items():
        before = old[key]
        if before == value:
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in RESUMABLE_FIELDS) or (key in EXTENDABLE_FIELDS and value >= before):
            allowed.append(f"{key}: {before!r} -> {value!r}")
        else:
            grow = " (it may only grow)" if key in EXTENDABLE_FIELDS else ""
            refused.append(f"{key} changed from {before!r} to {value!r} since the checkpoint{grow}")
    if refused:
        raise ConfigError("cannot resume: " + "; ".join(refused) + "; put the checkpoint's values back, or start "
                          "a new run in another run.run_dir")
    return allowed


# ----------------------------------------------------------------------------------------------
# Presets: published hyper-parameters (REFERENCE.md) and the CPU demo. A preset states only what
# differs from the dataclass defaults (the CIFAR NAYER values for synthesis and distill, the
# Fashion-MNIST teacher normalisation).

PresetBuilder = typing.Callable[[], NayerConfig]
PRESETS: dict[str, PresetBuilder] = {}


def preset(name: str, parent: str | None = None) -> typing.Callable[[typing.Callable], PresetBuilder]:
    """Register a preset in ``PRESETS`` under ``name``.

    Without ``parent`` the decorated function takes no argument and returns a NayerConfig; with
    ``parent`` it is given a fresh copy of the parent preset's config and returns it changed. The
    decorator returns the zero-argument builder that it registered.

    Raises:
        ValueError: ``name`` is registered already, or ``parent`` is not (register parents first).
    """
    def register(fn: typing.Callable) -> PresetBuilder:
        if name in PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        if parent is not None and parent not in PRESETS:
            raise ValueError(f"preset {name!r}: register its parent {parent!r} first")
        if parent is None:
            PRESETS[name] = fn
            return fn

        @functools.wraps(fn)
        def build() -> NayerConfig:
            return fn(PRESETS[parent]())

        PRESETS[name] = build
        return build
    return register


def get_preset(name: str) -> NayerConfig:
    """A fresh NayerConfig for a named preset; ConfigError lists the names for an unknown one."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]()


def as_deepinversion(cfg: NayerConfig, steps: int = 2000) -> NayerConfig:
    """Turn a NAYER preset into DeepInversion (Yin et al., CVPR 2020) on the same teacher, student
    and student schedule: ``steps`` Adam updates (lr 0.1, betas 0.5/0.99; DataFree toolbox CIFAR
    scripts) of the pixels of each batch, loss weights bn 10, ce 1, adv 1, image priors tv_l2 1e-4
    and l2 1e-5 and first-BN multiplier 10 (NVlabs), no BN-statistics momentum, no warm-up, one
    synthesis batch per epoch. ``steps`` is 2000 in the published CIFAR runs.

    The pixel optimiser is ``synthesis.deepinversion.pixel_lr`` / ``pixel_betas`` (config v1 used
    ``synthesis.generator_lr`` / ``generator_betas`` for it; those now only drive generators)."""
    s, di = cfg.synthesis, cfg.synthesis.deepinversion
    s.method, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = "deepinversion", steps, 1, 0
    di.pixel_lr, di.pixel_betas = 0.1, (0.5, 0.99)
    s.bn_loss_weight, s.ce_loss_weight, s.adv_loss_weight = 10.0, 1.0, 1.0
    di.tv_loss_weight, di.l2_loss_weight, s.first_bn_multiplier, s.bn_momentum = 1e-4, 1e-5, 10.0, 0.0
    cfg.run.warmup_epochs = 0
    cfg.run.run_dir += "_deepinversion"
    return cfg


def as_fast(cfg: NayerConfig) -> NayerConfig:
    """Turn a NAYER preset into Fast / FM (Fang et al., AAAI 2022) on the same teacher, student and
    schedule: a generator fed with 256-d random noise, meta-learned across batches (FOMAML, the
    published default), 5 steps per batch with lr_g 3e-3 and lr_z 0.01, loss weights adv 1.1, bn 10,
    ce 0.4, BN-statistics momentum 0.9 (toolbox flags of the 5-step CIFAR-100 runs)."""
    s = cfg.synthesis
    s.method, s.noise_dim, s.num_generator_steps = "fast", 256, 5
    s.generator_lr, s.fast.latent_lr, s.fast.meta_learning = 3e-3, 0.01, "fomaml"
    s.adv_loss_weight, s.bn_loss_weight, s.ce_loss_weight, s.bn_momentum = 1.1, 10.0, 0.4, 0.9
    cfg.run.run_dir += "_fast"
    return cfg


def _register_baselines(parent: str) -> None:
    preset(f"{parent}_deepinversion", parent=parent)(as_deepinversion)
    preset(f"{parent}_fast", parent=parent)(as_fast)


#: The Fashion-MNIST ResNet-20 teacher that ships with the package (trained on the real training set
#: by ``launch/train_teacher.py`` with its default settings; the record is the .json beside it).
DEMO_TEACHER = str(Path(__file__).resolve().parent / "assets" / "fashion_mnist_resnet20.safetensors")


@preset("fashion_mnist")
def fashion_mnist() -> NayerConfig:
    """CPU demo: ResNet-20 teacher -> ResNet-8 student on Fashion-MNIST (28 px, 1 channel), sized so
    that the README's first command finishes within 15 minutes on 2 CPU cores without native bf16
    (fp32), student >= 88% top-1 (README "Measured results" has the measured numbers).

    Chosen by measurement on a 2-core AVX2 EPYC (benchmarks/results/fashion_mnist_tuning.md): one
    synthesis batch of 200 per epoch (two in the one warm-up epoch), 20 generator steps each, one
    generator for the whole run (``generator_life_epochs`` = epochs = 10; the noisy layer is still
    re-initialised for every batch), and many small student steps (720 of batch 32 per epoch).
    Published: the loss weights, BN momentum, generator and noisy layer, KD temperature 20, student
    lr 0.1 with a cosine schedule. More generator steps per image beat more images, and smaller
    student batches with more steps beat larger ones, at equal wall time."""
    cfg = NayerConfig()  # the defaults' teacher is this one: resnet20, Fashion-MNIST names and statistics
    cfg.teacher.weights = DEMO_TEACHER
    cfg.synthesis = SynthesisConfig(batch_size=200, num_generator_steps=20, batches_per_epoch=1,
                                    warmup_batches_per_epoch=2, generator_width=32, crop_padding=2)
    cfg.distill = DistillConfig(batch_size=32, steps_per_epoch=720, lr=0.1, crop_padding=2)
    cfg.eval = EvalConfig(every_epochs=2)  # 10,000 real test images, every other epoch and at the end
    # resume=True: running the same command again continues a stopped run, or reports a finished one.
    cfg.run = RunConfig(run_dir="runs/fashion_mnist", epochs=10, warmup_epochs=1, resume=True)
    return cfg


@preset("fashion_mnist_deepinversion", parent="fashion_mnist")
def fashion_mnist_deepinversion(cfg: NayerConfig) -> NayerConfig:
    """DeepInversion on the Fashion-MNIST CPU demo: 200 pixel steps per batch instead of the
    published 2000, so that a run that converges fits a CPU session (see benchmarks/gpu_hours.py)."""
    return as_deepinversion(cfg, steps=200)


preset("fashion_mnist_fast", parent="fashion_mnist")(as_fast)


@preset("fashion_mnist_w4a4", parent="fashion_mnist")
def fashion_mnist_w4a4(cfg: NayerConfig) -> NayerConfig:
    """Data-free quantization with NAYER (paper Table 3): the student is the teacher's ResNet-20,
    copied from its weights, BatchNorm folded, W4A4 fake-quantized (first and last layers at 8 bits;
    ``nayer_scale.quantization``), trained by the same NAYER loop at student lr 1e-4 (the folded,
    quantized network diverges at the demo's 0.1: benchmarks/quantization.py). Other bit widths:
    ``student.quantization=w8a8`` etc. The quantized export is ``student_quantized.safetensors``."""
    cfg.student = dataclasses.replace(cfg.student, arch=cfg.teacher.arch, quantization="w4a4")
    cfg.distill.lr, cfg.distill.lr_min = 1e-4, 1e-6
    cfg.run.run_dir = "runs/fashion_mnist_w4a4"
    return cfg


@preset("fashion_mnist_w4a4_zeroq", parent="fashion_mnist_w4a4")
def fashion_mnist_w4a4_zeroq(cfg: NayerConfig) -> NayerConfig:
    """The ZeroQ-style baseline (Cai et al., CVPR 2020) of ``fashion_mnist_w4a4`` on the same
    harness: "distilled data" by BN-statistics matching of the pixels (DeepInversion, 200 pixel
    steps per batch, without its cross-entropy and adversarial terms), the same quantized student
    and KD fine-tuning. PTQ and the real-data bound (not data-free) are rows of
    benchmarks/quantization.py: they are not training runs of this loop."""
    cfg = as_deepinversion(cfg, steps=200)
    cfg.synthesis.ce_loss_weight, cfg.synthesis.adv_loss_weight = 0.0, 0.0
    cfg.run.run_dir = "runs/fashion_mnist_w4a4_zeroq"
    return cfg


@preset("cifar10")
def cifar10() -> NayerConfig:
    """CIFAR-10, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (E=100 -> 120 epochs): the
    synthesis, distill and run defaults."""
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="wrn40_2", class_names="cifar10", mean=(0.4914, 0.4822, 0.4465),
                                std=(0.2023, 0.1994, 0.2010), in_channels=3, image_size=32)
    cfg.student.arch = "wrn16_2"
    cfg.eval.dataset = "none"
    cfg.run.run_dir = "runs/cifar10"
    return cfg


_register_baselines("cifar10")


@preset("cifar100", parent="cifar10")
def cifar100(cfg: NayerConfig) -> NayerConfig:
    """CIFAR-100, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (40 generator steps)."""
    cfg.teacher.class_names = "cifar100"
    cfg.teacher.mean, cfg.teacher.std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    cfg.synthesis.num_generator_steps = 40
    cfg.run.run_dir = "runs/cifar100"
    return cfg


_register_baselines("cifar100")


@preset("tiny_imagenet")
def tiny_imagenet() -> NayerConfig:
    """Tiny-ImageNet (64 px), resnet34 -> resnet18, published hyper-parameters (no flip)."""
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="resnet34", class_names="tiny_imagenet", mean=(0.4802, 0.4481, 0.3975),
                                std=(0.2302, 0.2265, 0.2262), in_channels=3, image_size=64)
    cfg.student.arch = "resnet18"
    cfg.synthesis = SynthesisConfig(batch_size=200, num_generator_steps=60, batches_per_epoch=4,
                                    warmup_batches_per_epoch=20, flip=False)
    cfg.distill = DistillConfig(batch_size=256, steps_per_epoch=1000, lr=0.1, flip=False)
    cfg.eval.dataset = "none"
    cfg.run.run_dir = "runs/tiny_imagenet"
    return cfg


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@preset("imagenet_r50")
def imagenet_r50() -> NayerConfig:
    """ImageNet (224 px, 1000 classes): torchvision ResNet-50 teacher -> ResNet-50 student, the
    published ImageNet generator (REFERENCE.md) and E = 300 (+ 20 warm-up) epochs, precision by
    capability (bf16 and channels_last on a bf16 GPU). Sizes are *per process*: each process synthesises batches of 256 covering a
    rotating slice of the 1000 classes (``nayer_scale.synthesis.labels``) and trains the student on
    256 memory-bank images per step (global batch 256 x processes).

    Published: the teacher/student pair, the generator, E, the common loss weights and the 1/8
    roll jitter + flip of the synthesis augmentation. Not published for ImageNet, chosen here: 60
    generator steps per batch and 0.1 student lr (the Tiny-ImageNet values), 2 batches per epoch
    (10 in warm-up) and 500 student steps per epoch, random-resized-crop (0.08-1) + flip for the
    student (torchvision's ImageNet train transform). The LTE encoder is the offline MiniLM (the
    paper uses CLIP ViT-B/32: ``lte.encoder=clip:openai/clip-vit-base-patch32``). No eval set by
    default (data-free); pass ``eval.dataset=imagenet eval.root=/path/to/val`` to report top-1.
    """
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="tv_resnet50", weights="torchvision:resnet50.IMAGENET1K_V1", class_names="imagenet",
                                mean=IMAGENET_MEAN, std=IMAGENET_STD, in_channels=3, image_size=224)
    cfg.student.arch = "tv_resnet50"
    cfg.synthesis = SynthesisConfig(batch_size=256, num_generator_steps=60, batches_per_epoch=2,
                                    warmup_batches_per_epoch=10, roll_jitter=224 // 8)
    cfg.distill = DistillConfig(batch_size=256, steps_per_epoch=500, lr=0.1, resized_crop_scale=(0.08, 1.0))
    cfg.eval = EvalConfig(dataset="none", every_epochs=10)  # 50,000 val images: not every epoch
    # resume=True: after a preemption the same command continues the run.
    cfg.run = RunConfig(run_dir="runs/imagenet_r50", epochs=320, grid_per_class=1, resume=True)
    # The whole history would be ~1.6M images (247 GB) with 8 processes: keep the newest 300k
    # (45 GB, one copy per node in shared memory), as the paper's Table 5 allows.
    cfg.memory.max_images = 300_000
    return cfg


@preset("imagenet_r50_r18", parent="imagenet_r50")
def imagenet_r50_r18(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` with a torchvision ResNet-18 student."""
    cfg.student.arch, cfg.run.run_dir = "tv_resnet18", "runs/imagenet_r50_r18"
    return cfg


@preset("imagenet_r50_mbv2", parent="imagenet_r50")
def imagenet_r50_mbv2(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` with a torchvision MobileNetV2 student (student lr 0.05)."""
    cfg.student.arch, cfg.distill.lr, cfg.run.run_dir = "tv_mobilenet_v2", 0.05, "runs/imagenet_r50_mbv2"
    return cfg


@preset("imagenet_r50_smoke", parent="imagenet_r50")
def imagenet_r50_smoke(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` shrunk to seconds on a CPU: random-weight ResNet-50 teacher and student,
    32 px, synthesis batches of 16 (rotating class slices), 2 generator steps, 3 epochs (1 warm-up),
    the weight-free hashed text encoder, the memory bank read straight from its shards. The code
    path of the full preset, for tests and for checking a machine before a long run."""
    cfg.teacher.weights, cfg.teacher.image_size = "", 32
    s = cfg.synthesis
    s.batch_size, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = 16, 2, 2, 1
    s.generator_width, s.noise_dim, s.roll_jitter = 8, 32, 32 // 8
    cfg.lte.encoder = "hashed:64"
    cfg.distill.batch_size, cfg.distill.steps_per_epoch = 8, 3
    cfg.eval.batch_size = 16
    cfg.run = dataclasses.replace(cfg.run, run_dir="runs/imagenet_r50_smoke", epochs=3, warmup_epochs=1,
                                  memory_cache="none", safe_point_every_steps=1)
    return cfg
