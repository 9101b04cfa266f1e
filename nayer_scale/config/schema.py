"""The sections of a run's config: typed dataclasses whose defaults are one recipe, the CPU demo.

``NayerConfig()`` is the Fashion-MNIST demo that the README's first command runs (the shipped
ResNet-20 teacher distilled into a ResNet-8 student on 2 CPU cores; ``nayer_scale.recipes`` explains
how its values were chosen); every other recipe states what differs from it. Infrastructure
(``run``) is kept apart from the method's hyper-parameters (``synthesis``, ``distill``);
``synthesis`` holds what every synthesis method shares and each method's own fields live in its
sub-section (``synthesis.nayer``, ``synthesis.deepinversion``, ``synthesis.fast``).

Every knob of the published code has a descriptive name here (docs/method.md has the method):

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

Choices are ``Literal`` annotations, numeric ranges are declared on each field and every field has
a ``doc`` line in its metadata (``nayer_scale.config.validate``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from .validate import Section, at_least, check, in_range, positive

__all__ = [
    "CHANNELS_LAST",
    "DEMO_TEACHER",
    "EVAL_DATASETS",
    "GENERATOR_INPUTS",
    "MIXED_PRECISIONS",
    "SYNTHESIS_METHODS",
    "DeepInversionConfig",
    "DistillConfig",
    "EvalConfig",
    "FastConfig",
    "LTEConfig",
    "MemoryConfig",
    "NayerConfig",
    "NayerMethodConfig",
    "QuantizationConfig",
    "RunConfig",
    "StudentConfig",
    "SynthesisConfig",
    "TeacherConfig",
    "option",
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
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow")  # run.log_with, through accelerate's trackers
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
BNStatsScope = Literal["process", "global"]
MemoryCache = Literal["auto", "device", "cpu", "node", "none"]
Retirement = Literal["fifo", "reservoir"]
ShardEncoding = Literal["raw", "png", "webp", "webp_lossy"]

# The choices as tuples, for modules that check or list them (nayer_scale.precision).
SYNTHESIS_METHODS = typing.get_args(SynthesisMethod)
EVAL_DATASETS = typing.get_args(EvalDataset)
MIXED_PRECISIONS = typing.get_args(MixedPrecision)
CHANNELS_LAST = typing.get_args(ChannelsLast)
GENERATOR_INPUTS = typing.get_args(GeneratorInput)

#: The Fashion-MNIST ResNet-20 teacher that ships with the package (trained on the real training set
#: by ``launch/train_teacher.py`` with its default settings; the record is the .json beside it).
DEMO_TEACHER = str(Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist_resnet20.safetensors")


def option(default: Any, doc: str) -> Any:
    """A dataclass field without a numeric range: its ``default`` and its ``doc`` line. A section
    class as ``default`` makes a sub-section built fresh for every config."""
    if isinstance(default, type):
        return field(default_factory=default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def _check_scale(scale: tuple[float, ...], name: str) -> None:
    check(
        len(scale) == 0 or (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1),
        f"{name} takes two area fractions 0 < min <= max <= 1 (e.g. 0.08,1), or nothing; got {scale}",
    )


@dataclass
class TeacherConfig(Section):
    """The pretrained teacher: a zoo name, ``torchvision:<name>``, ``timm:<name>`` or
    ``package.module:factory``, its weights (a local safetensors or .pth file, or a hub spec
    ``ResNet50_Weights.IMAGENET1K_V2`` / ``torchvision:resnet50.IMAGENET1K_V2`` /
    ``hf-hub:timm/resnet50.tv_in1k``, downloaded once when the machine is online), its input
    normalisation and its class names. ``arch=hf:<hub id or folder>`` is a transformers image
    classifier, a timm repository or a nayer-scale export. Where the source knows the input (an
    ``hf:`` folder, torchvision's named weights, timm's ``pretrained_cfg``), fields left at their
    defaults are filled from it at start-up and conflicting ones refused
    (``nayer_scale.models.inputs``; docs/teachers.md)."""

    SECTION: ClassVar[str] = "teacher"
    SUMMARY: ClassVar[str] = "the pretrained teacher: architecture, weights, input normalisation, class names"

    arch: str = option(
        "resnet20", "zoo name, torchvision:<name>, timm:<name>, package.module:factory, or hf:<hub id or folder>"
    )
    weights: str = option(DEMO_TEACHER, "weights file (.safetensors / .pth) or hub spec; empty: random weights")
    class_names: str = option(
        "fashion_mnist",
        "a dataset key (see nayer_scale.lte), a .txt file, one name per "
        "line, or id2label: the teacher source's own names",
    )
    mean: tuple[float, ...] = in_range(
        0.0, 1.0, default=(0.2860,), doc="input normalisation mean of [0, 1] pixels, per channel"
    )
    std: tuple[float, ...] = positive((0.3530,), doc="input normalisation std of [0, 1] pixels, per channel")
    in_channels: int = positive(1, doc="input channels")
    image_size: int = at_least(8, default=28, doc="input side in pixels (square images)")

    def check_relations(self) -> None:
        check(bool(self.arch), "teacher.arch is empty: give a zoo name (e.g. resnet20) or package.module:factory")
        check(
            self.class_names != "id2label" or self.arch.startswith(("hf:", "torchvision:", "timm:")),
            "teacher.class_names=id2label (the teacher source's own names: a model folder's config.json, "
            "torchvision weights' categories) needs teacher.arch=hf:<hub id or folder>, torchvision:<name> or "
            "timm:<name>: set teacher.class_names to a dataset key or a .txt file",
        )
        check(
            len(self.mean) == len(self.std) == self.in_channels,
            f"teacher.mean {self.mean} and teacher.std {self.std} need one value per input channel "
            f"(teacher.in_channels={self.in_channels})",
        )


@dataclass
class QuantizationConfig(Section):
    """Data-free quantization (NAYER Table 3, ``nayer_scale.quantization``): with bit widths set,
    the student is a fake-quantized copy of the teacher initialised from its weights, with
    ``weight_bits``-bit per-channel weights and ``activation_bits``-bit per-tensor activations.
    Both 0 (the default): a float student trained from scratch."""

    SECTION: ClassVar[str] = "student.quantization"
    SUMMARY: ClassVar[str] = "data-free quantization of the student (paper Table 3); bit widths 0 = a float student"

    weight_bits: int = in_range(0, 8, default=0, doc="bits of the weights (2..8), 0 = no quantization")
    activation_bits: int = in_range(0, 8, default=0, doc="bits of the activations (2..8), 0 = no quantization")
    keep_ends_8bit: bool = option(True, "first and last layer at 8 bits (ZeroQ / GDFQ convention)")
    fold_bn: bool = option(True, "fold Conv2d -> BatchNorm2d pairs before quantizing")

    @classmethod
    def from_name(cls, name: str, **changes: Any) -> QuantizationConfig:
        """``"w4a8"`` -> weight_bits 4, activation_bits 8; ``"none"`` -> a float student.

        Raises:
            ConfigError: ``name`` is neither "none" nor w{B}a{B} with B in 2..8.
        """
        if str(name) == "none":
            return cls(**changes)
        match = re.fullmatch(r"w([2-8])a([2-8])", str(name))
        check(
            match is not None,
            f"student.quantization={name!r} is not w{{B}}a{{B}} with bit widths B in 2..8: set "
            "student.quantization.weight_bits and .activation_bits (e.g. 4 and 4 for w4a4), or use e.g. w8a8, "
            "w6a6, w4a8 or w4a4, or none (a float student)",
        )
        return cls(weight_bits=int(match.group(1)), activation_bits=int(match.group(2)), **changes)

    @property
    def enabled(self) -> bool:
        """Whether the student is quantized."""
        return self.weight_bits > 0

    @property
    def name(self) -> str:
        """``w{B}a{B}`` (e.g. "w4a4"), or "none" for a float student."""
        return f"w{self.weight_bits}a{self.activation_bits}" if self.enabled else "none"

    def check_relations(self) -> None:
        w, a = self.weight_bits, self.activation_bits
        check(
            (w == 0 and a == 0) or (2 <= w <= 8 and 2 <= a <= 8),
            f"student.quantization has weight_bits={w}, activation_bits={a}: set both in 2..8 (e.g. 4 and 4 for "
            "W4A4), or both to 0 (a float student)",
        )


@dataclass
class StudentConfig(Section):
    """The student architecture (a zoo name or ``package.module:factory``), trained from scratch;
    or, with ``quantization`` bit widths, a fake-quantized copy of the teacher (see
    ``QuantizationConfig``)."""

    SECTION: ClassVar[str] = "student"
    SUMMARY: ClassVar[str] = "the student architecture, trained from scratch (or a quantized copy of the teacher)"

    arch: str = option("resnet8", "zoo name or package.module:factory")
    quantization: QuantizationConfig = option(QuantizationConfig, "data-free quantization of the student")

    def check_relations(self) -> None:
        check(bool(self.arch), "student.arch is empty")


@dataclass
class LTEConfig(Section):
    """Label-text embeddings: text encoder spec ("minilm", "minilm:/folder", "clip:<id or folder>",
    "hashed[:dim]" for the weight-free hashed bag of words),
    prompt template (key or format string with {name}/{index}) and the cache folder."""

    SECTION: ClassVar[str] = "lte"
    SUMMARY: ClassVar[str] = "label-text embeddings: text encoder, prompt template, cache folder"

    encoder: str = option("minilm", "minilm, minilm:/folder, clip:<hub id or folder>, or hashed[:dim]")
    template: str = option(
        "photo_of", "prompt template: a key (photo_of, class_of, ...) or a format string with {name} / {index}"
    )
    cache_dir: str = option("~/.cache/nayer-scale/lte", "folder of the LTE cache (safetensors)")

    def check_relations(self) -> None:
        check(bool(self.encoder), "lte.encoder is empty: use minilm, minilm:/path, clip:<id or path> or hashed")


@dataclass
class NayerMethodConfig(Section):
    """NAYER-only synthesis fields: the generator input and the noisy layer, i.e. the ablation
    switches of the paper's Table 4 (the defaults are the method), and the shared generator."""

    SECTION: ClassVar[str] = "synthesis.nayer"
    SUMMARY: ClassVar[str] = "NAYER's own fields: generator input and noisy layer (the Table 4 switches)"

    generator_input: GeneratorInput = option("lte", "what feeds the noisy layer (Table 4): lte is NAYER")
    noise_beta: float = at_least(0.0, default=1.0, doc="beta of lte_plus_noise: e_y + beta * z")
    noisy_layer: NoisyLayerKind = option(
        "k_to_1", "one linear per copy of the K classes (NAYER), one per sample, or none"
    )
    noisy_layer_reinit: bool = option(True, "re-draw the noisy linears before every synthesis batch")
    noisy_layer_init: NoisyLayerInit = option("normal", "initialisation of the noisy linears (normal is published)")
    noisy_layer_batchnorm: bool = option(True, "BatchNorm1d before the noisy linears")
    shared_generator: bool = option(
        False, "one generator for all processes: same initial weights, gradients all-reduced"
    )


@dataclass
class DeepInversionConfig(Section):
    """DeepInversion-only fields: Adam on the pixels of each batch and the image priors (published
    values: DataFree toolbox CIFAR scripts and NVlabs; see ``nayer_scale.recipes.as_deepinversion``)."""

    SECTION: ClassVar[str] = "synthesis.deepinversion"
    SUMMARY: ClassVar[str] = "DeepInversion's own fields: the pixel optimiser and the image priors"

    pixel_lr: float = positive(0.1, doc="Adam learning rate of the pixels")
    pixel_betas: tuple[float, float] = in_range(
        0.0, 1.0, default=(0.5, 0.99), high_open=True, doc="Adam betas of the pixels"
    )
    tv_loss_weight: float = at_least(0.0, default=0.0, doc="weight of the total-variation (l2) image prior")
    l2_loss_weight: float = at_least(0.0, default=0.0, doc="weight of the l2 norm of the (normalised) pixels")


@dataclass
class FastConfig(Section):
    """Fast-only fields: the per-batch random inputs and the meta-learning rule."""

    SECTION: ClassVar[str] = "synthesis.fast"
    SUMMARY: ClassVar[str] = "Fast's own fields: the per-batch random inputs and the meta-learning rule"

    latent_lr: float = positive(0.01, doc="learning rate of the per-batch random inputs z (lr_z)")
    meta_learning: MetaLearning = option("fomaml", "fomaml (published default, is_maml=1) or reptile")


#: synthesis.<old name> of config v1 -> the sub-section it moved to (read and written with a warning).
_MOVED_SYNTHESIS = {
    **dict.fromkeys(
        (
            "generator_input",
            "noise_beta",
            "noisy_layer",
            "noisy_layer_reinit",
            "noisy_layer_init",
            "noisy_layer_batchnorm",
            "shared_generator",
        ),
        "nayer",
    ),
    **dict.fromkeys(("tv_loss_weight", "l2_loss_weight"), "deepinversion"),
    **dict.fromkeys(("latent_lr", "meta_learning"), "fast"),
}


def _warn_moved(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed: use {new}", DeprecationWarning, stacklevel=3)


@dataclass
class SynthesisConfig(Section):
    """Synthesis method, generator and synthesis-loss hyper-parameters shared by the methods (NAYER
    Alg. 1, inner loop); each method's own fields are in ``nayer``, ``deepinversion`` and ``fast``.
    For "deepinversion", ``num_generator_steps`` is the number of pixel updates per batch (the pixel
    optimiser is ``deepinversion.pixel_lr`` / ``pixel_betas``); for "fast" the generator fields
    apply to the meta-learned generator fed with ``noise_dim`` random inputs. The v1 attribute
    names (``synthesis.generator_input``, ...) still read and write their new place, with a
    DeprecationWarning."""

    SECTION: ClassVar[str] = "synthesis"
    SUMMARY: ClassVar[str] = "synthesis of the images: method, generator, synthesis losses, augmentation"

    method: SynthesisMethod = option("nayer", "nayer, or a baseline of the paper's Table 2: deepinversion, fast")
    batch_size: int = positive(200, doc="images per synthesis batch (per process)")
    num_generator_steps: int = positive(20, doc="generator / noisy-layer (or pixel) updates per synthesis batch")
    batches_per_epoch: int = positive(1, doc="synthesis batches per epoch after warm-up")
    warmup_batches_per_epoch: int = at_least(0, default=2, doc="synthesis batches per warm-up epoch")
    generator_lr: float = positive(4e-3, doc="Adam learning rate of generator and noisy layer")
    generator_betas: tuple[float, float] = in_range(
        0.0, 1.0, default=(0.5, 0.999), high_open=True, doc="Adam betas of generator and noisy layer"
    )
    generator_width: int = positive(32, doc="channels of the generator's last stages")
    generator_life_epochs: int = positive(10, doc="the generator is re-created every this many epochs")
    noise_dim: int = positive(1000, doc="width of the generator input (the noisy layer's output)")
    ce_loss_weight: float = at_least(0.0, default=0.5, doc="weight of the teacher cross-entropy")
    bn_loss_weight: float = at_least(0.0, default=10.0, doc="weight of the BN-statistics loss")
    adv_loss_weight: float = at_least(0.0, default=1.33, doc="weight of the adversarial term (after warm-up)")
    bn_momentum: float = in_range(
        0.0, 1.0, default=0.9, high_open=True, doc="EMA blend of the BN statistics of earlier batches; 0 = off"
    )
    first_bn_multiplier: float = at_least(0.0, default=1.0, doc="weight of the first BN layer's term")
    bn_stats_scope: BNStatsScope = option(
        "process",
        "process (published): BN statistics of each process's batch; "
        "global: of all processes' batches (one all-reduce per step)",
    )
    crop_padding: int = at_least(0, default=2, doc="pixels of the padded random crop")
    flip: bool = option(True, "random horizontal flip")
    roll_jitter: int = at_least(
        0, default=0, doc="pixels; random roll of up to this many per axis (ImageNet: size // 8)"
    )
    resized_crop_scale: tuple[float, ...] = option(
        (), "(min, max) area of a random resized crop instead of the padded crop; empty = off"
    )
    nayer: NayerMethodConfig = option(NayerMethodConfig, "NAYER's own fields")
    deepinversion: DeepInversionConfig = option(DeepInversionConfig, "DeepInversion's own fields")
    fast: FastConfig = option(FastConfig, "Fast's own fields")

    def __getattr__(self, name: str) -> Any:  # only called for names that are not attributes
        sub = _MOVED_SYNTHESIS.get(name)
        if sub is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        _warn_moved(f"synthesis.{name}", f"synthesis.{sub}.{name}")
        return getattr(getattr(self, sub), name)

    def __setattr__(self, name: str, value: Any) -> None:
        sub = _MOVED_SYNTHESIS.get(name)
        if sub is None:
            object.__setattr__(self, name, value)
            return
        _warn_moved(f"synthesis.{name}", f"synthesis.{sub}.{name}")
        setattr(getattr(self, sub), name, value)

    def check_relations(self) -> None:
        _check_scale(self.resized_crop_scale, "synthesis.resized_crop_scale")
        check(
            not self.nayer.shared_generator or self.method == "nayer",
            "synthesis.nayer.shared_generator applies to synthesis.method=nayer only: set it to false",
        )


@dataclass
class DistillConfig(Section):
    """Student training on the memory bank (NAYER Alg. 1, student loop)."""

    SECTION: ClassVar[str] = "distill"
    SUMMARY: ClassVar[str] = "student training on the memory bank: optimiser, schedule, KD loss, augmentation"

    batch_size: int = positive(32, doc="memory-bank images per student step (per process)")
    steps_per_epoch: int = positive(720, doc="student steps per epoch after warm-up")
    lr: float = positive(0.1, doc="SGD learning rate at the start of the cosine schedule")
    lr_min: float = at_least(0.0, default=2e-4, doc="cosine schedule floor")
    momentum: float = in_range(0.0, 1.0, default=0.9, high_open=True, doc="SGD momentum")
    weight_decay: float = at_least(0.0, default=1e-4, doc="SGD weight decay")
    temperature: float = positive(20.0, doc="KD temperature tau")
    crop_padding: int = at_least(0, default=2, doc="pixels of the padded random crop")
    flip: bool = option(True, "random horizontal flip")
    resized_crop_scale: tuple[float, ...] = option(
        (), "(min, max) area of a random resized crop (ImageNet: 0.08, 1); empty = off"
    )

    def check_relations(self) -> None:
        _check_scale(self.resized_crop_scale, "distill.resized_crop_scale")
        check(self.lr_min <= self.lr, f"distill.lr_min ({self.lr_min}) must be in [0, distill.lr={self.lr}]")


@dataclass
class MemoryConfig(Section):
    """The memory bank of synthetic images (``nayer_scale.memory``): its size bound, shard
    encoding, where its decoded images live and the prefetching of student batches."""

    SECTION: ClassVar[str] = "memory"
    SUMMARY: ClassVar[str] = "the memory bank: its bound, shard encoding, cache and prefetching"

    max_images: int = at_least(
        0,
        default=0,
        doc="images kept over all processes (each keeps max_images // processes "
        "of its own); 0 = all, as published. When full, whole shards retire "
        "(paper Table 5)",
    )
    retirement: Retirement = option(
        "fifo",
        "fifo: the oldest shards retire (the paper's buffer); reservoir: a uniform sample of the history is kept",
    )
    encoding: ShardEncoding = option("raw", "raw | png | webp (lossless); webp_lossy only when asked for by name")
    webp_quality: int = in_range(1, 100, default=90, doc="quality of encoding=webp_lossy")
    prefetch: int = at_least(0, default=2, doc="student batches gathered ahead in a background thread; 0 = inline")
    cache: MemoryCache = option(
        "auto",
        "where decoded images live: auto (the training device when the bank fits, "
        "else one copy per node in shared memory, else none), device, cpu (per "
        "process), node (/dev/shm, one copy per node) or none (read from the shards)",
    )
    cache_gb: float = at_least(
        0.0,
        default=0.0,
        doc="cap on the cache per process in GiB; 0 = a quarter of the GPU's "
        "memory, or half of this process's share of the host RAM",
    )


@dataclass
class EvalConfig(Section):
    """Held-out real evaluation data. Only the *test* split is ever read by a distillation run."""

    SECTION: ClassVar[str] = "eval"
    SUMMARY: ClassVar[str] = "evaluation on a real test split (never used for training or model selection)"

    dataset: EvalDataset = option("fashion_mnist", "the real test set to report top-1 on; none = data-free only")
    root: str = option(
        "",
        "folder of the dataset files; empty searches the standard places. imagenet: an "
        "ImageFolder of the val split or webdataset val shards (folder, .tar or brace pattern)",
    )
    batch_size: int = positive(
        250, doc="images per evaluation batch (250 was 2x faster per image than 1000 on a 2-core CPU)"
    )
    every_epochs: int = positive(2, doc="evaluate the student every this many epochs after warm-up (and at the end)")
    resize: int = at_least(
        0, default=0, doc="imagenet, hf: shorter side before the centre crop; 0 = image_size / 0.875"
    )
    num_workers: int = at_least(0, default=8, doc="imagenet, hf: decoding workers per process")
    hf_path: str = option("", "hf: a hub id, a save_to_disk folder, a parquet / arrow file or glob, or an image folder")
    hf_split: str = option("", "hf: the split; empty = the test or validation split")
    hf_image_column: str = option("", "hf: the image column; empty = the Image feature")
    hf_label_column: str = option("", "hf: the label column; empty = the ClassLabel feature")
    hf_streaming: bool = option(False, "hf: stream a hub set instead of downloading the split first")
    hf_match_class_names: bool = option(
        True, "hf: false = the set's label i is the teacher's class i under another name"
    )

    def check_relations(self) -> None:
        check(
            self.dataset != "imagenet" or bool(self.root),
            "eval.dataset=imagenet needs eval.root: an ImageFolder of the val split or webdataset val shards",
        )
        check(
            self.dataset != "hf" or bool(self.hf_path),
            "eval.dataset=hf needs eval.hf_path: a hub id (e.g. ILSVRC/imagenet-1k), a save_to_disk folder, "
            "a parquet / arrow file or glob, or an image folder",
        )


@dataclass
class RunConfig(Section):
    """Infrastructure: run folder, schedule length, precision, resume, logging."""

    SECTION: ClassVar[str] = "run"
    SUMMARY: ClassVar[str] = "infrastructure: run folder, schedule length, precision, resume, checkpoints, logging"

    run_dir: str = option("runs/fashion_mnist", "the run folder: memory bank, checkpoints, metrics, student")
    epochs: int = positive(10, doc="epochs in all, warm-up included")
    warmup_epochs: int = at_least(0, default=1, doc="synthesis-only epochs at the start (no adversarial term)")
    seed: int = at_least(0, default=0, doc="seed of every random stream of the run")
    mixed_precision: MixedPrecision = option(
        "auto", "auto (by capability: see nayer_scale.precision), no, bf16 or fp16"
    )
    channels_last: ChannelsLast = option("auto", "NHWC memory format; auto: on (measured faster on GPU and CPU)")
    resume: bool = option(True, "continue from run_dir's latest checkpoint (or report a finished run)")
    keep_checkpoints: int = at_least(1, default=2, doc="complete checkpoints kept")
    log_with: str = option(
        "none",
        "experiment trackers: none, all (every one installed), or a comma-separated list "
        "of tensorboard, wandb, trackio, mlflow",
    )
    log_every_steps: int = positive(10, doc="student steps between two loss records sent to the trackers")
    progress: bool = option(True, "tqdm bars on the main process")
    grid_per_class: int = positive(8, doc="images per class in the per-epoch sample grid")
    cpu: bool = option(False, "force CPU even when a GPU is present")
    cpu_threads: int = at_least(
        0, default=0, doc="torch threads per process on CPU; 0 = cores / processes on this node"
    )
    kernels: KernelChoice = option("auto", "auto: Triton on CUDA, else the PyTorch reference; env NAYER_KERNELS wins")
    compile: bool = option(
        False,
        "torch.compile the student and the teacher's KD forward (the first steps pay the "
        "compile time); accelerate launch --dynamo_backend turns it on",
    )
    compile_backend: str = option(
        "inductor", "torch.compile backend with run.compile (accelerate launch --dynamo_backend sets it)"
    )
    compile_mode: CompileMode = option(
        "default", "torch.compile mode with run.compile (accelerate launch --dynamo_mode sets it)"
    )
    safe_point_every_steps: int = positive(
        50,
        doc="SIGTERM / SIGUSR1 are acted on after a synthesis batch, every "
        "this many student steps, and at the end of an epoch",
    )

    def validate(self) -> RunConfig:
        """Check the section (configs written before "auto" stored channels_last as a bool)."""
        if isinstance(self.channels_last, bool):
            self.channels_last = "true" if self.channels_last else "false"
        self.channels_last = str(self.channels_last).lower()
        return super().validate()

    def check_relations(self) -> None:
        check(
            self.warmup_epochs < self.epochs,
            f"run.warmup_epochs ({self.warmup_epochs}) must be in [0, run.epochs={self.epochs})",
        )
        names = [n.strip() for n in str(self.log_with).lower().split(",") if n.strip()]
        check(
            names in (["none"], ["all"], []) or all(n in TRACKERS for n in names),
            f"run.log_with={self.log_with!r}: use none, all, or a comma-separated list of {', '.join(TRACKERS)}",
        )
        check(
            bool(str(self.compile_backend).strip()),
            "run.compile_backend must name a torch.compile backend, e.g. inductor (torch._dynamo.list_backends())",
        )


@dataclass
class NayerConfig:
    """The whole run: teacher, student, LTE, synthesis, distillation, memory bank, evaluation,
    infrastructure. The defaults are the CPU demo (module docstring)."""

    teacher: TeacherConfig = option(TeacherConfig, "the pretrained teacher")
    student: StudentConfig = option(StudentConfig, "the student")
    lte: LTEConfig = option(LTEConfig, "label-text embeddings")
    synthesis: SynthesisConfig = option(SynthesisConfig, "synthesis of the images")
    distill: DistillConfig = option(DistillConfig, "student training")
    memory: MemoryConfig = option(MemoryConfig, "the memory bank")
    eval: EvalConfig = option(EvalConfig, "evaluation on real data")
    run: RunConfig = option(RunConfig, "infrastructure")

    def validate(self) -> NayerConfig:
        """Check every section; raises ConfigError naming the field to change."""
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        q = self.student.quantization
        check(
            not q.enabled or self.student.arch == self.teacher.arch,
            f"student.quantization={q.name} quantizes a copy of the teacher, but student.arch={self.student.arch!r} "
            f"differs from teacher.arch={self.teacher.arch!r}: set student.arch={self.teacher.arch}",
        )
        return self

    def to_dict(self) -> dict:
        """Nested plain dict: section -> key -> value (sub-sections nested, tuples kept)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        """The whole config as YAML (sections, sub-sections nested, tuples as lists); given back
        through ``config=<file>`` (``nayer_scale.recipes.compose_config``) it reproduces this config."""
        header = "# nayer-scale config (NayerConfig.to_yaml); run it with  config=<this file>\n"
        return header + yaml.safe_dump(_plain(self.to_dict()), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: what ``yaml.safe_dump`` accepts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
