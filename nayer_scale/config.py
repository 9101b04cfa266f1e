"""Typed configuration of a NAYER run: nested dataclasses, named presets, ``section.key=value``
overrides, validation with messages that say what to change.

Infrastructure (``run``) is kept apart from the method's hyper-parameters (``synthesis``,
``distill``); every knob of the published code has a descriptive name here:

    published flag   field
    --------------   -----------------------------------
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
    lr_z (Fast)      synthesis.latent_lr
    tv / l2 (DI)     synthesis.tv_loss_weight / synthesis.l2_loss_weight

``synthesis.method`` picks the synthesis algorithm: "nayer" (default), or one of the two baselines of
the paper's Table 2 that share the teacher hooks, losses, memory bank, student training and
evaluation: "deepinversion" (Yin et al., CVPR 2020) and "fast" (Fang et al., AAAI 2022). Presets
``<dataset>_deepinversion`` / ``<dataset>_fast`` carry their published hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DistillConfig",
    "EvalConfig",
    "LTEConfig",
    "NayerConfig",
    "PRESETS",
    "RunConfig",
    "StudentConfig",
    "SynthesisConfig",
    "TeacherConfig",
    "SYNTHESIS_METHODS",
    "apply_overrides",
    "as_deepinversion",
    "as_fast",
    "config_from_dict",
    "get_preset",
]


SYNTHESIS_METHODS = ("nayer", "deepinversion", "fast")
EVAL_DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagenet", "none")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")  # resolved by nayer_scale.precision
CHANNELS_LAST = ("auto", "true", "false")
GENERATOR_INPUTS = ("lte", "noise", "onehot", "lte_cat_noise", "lte_plus_noise")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to change."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_scale(scale: tuple[float, ...], name: str) -> None:
    _check(len(scale) == 0 or (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1),
           f"{name} takes two area fractions 0 < min <= max <= 1 (e.g. 0.08,1), or nothing; got {scale}")


@dataclass
class TeacherConfig:
    """The pretrained teacher: a zoo name or ``package.module:factory``, its weights (a local
    safetensors or .pth file, or a hub spec ``torchvision:resnet50.IMAGENET1K_V2`` /
    ``hf-hub:timm/resnet50.tv_in1k``, downloaded once when the machine is online), its input
    normalisation and its class names."""

    arch: str = "resnet20"
    weights: str = ""
    class_names: str = "fashion_mnist"  # a dataset key (see nayer_scale.lte) or a .txt file, one name per line
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)
    in_channels: int = 1
    image_size: int = 28  # pixels

    def validate(self) -> None:
        _check(bool(self.arch), "teacher.arch is empty: give a zoo name (e.g. resnet20) or package.module:factory")
        _check(len(self.mean) == len(self.std) == self.in_channels,
               f"teacher.mean {self.mean} and teacher.std {self.std} need one value per input channel "
               f"(teacher.in_channels={self.in_channels})")
        _check(all(s > 0 for s in self.std), "teacher.std values must be positive")
        _check(self.image_size >= 8, "teacher.image_size must be at least 8 pixels")


@dataclass
class StudentConfig:
    """The student architecture (a zoo name or ``package.module:factory``), trained from scratch."""

    arch: str = "resnet8"

    def validate(self) -> None:
        _check(bool(self.arch), "student.arch is empty")


@dataclass
class LTEConfig:
    """Label-text embeddings: text encoder spec ("minilm", "minilm:/folder", "clip:<id or folder>",
    "hashed[:dim]" for the weight-free hashed bag of words),
    prompt template (key or format string with {name}/{index}) and the cache folder."""

    encoder: str = "minilm"
    template: str = "photo_of"
    cache_dir: str = "~/.cache/nayer-scale/lte"

    def validate(self) -> None:
        _check(bool(self.encoder), "lte.encoder is empty: use minilm, minilm:/path, clip:<id or path> or hashed")


@dataclass
class SynthesisConfig:
    """Synthesis method, generator, noisy layer and synthesis-loss hyper-parameters (NAYER Alg. 1,
    inner loop). For "deepinversion" the "generator" fields apply to the pixels being optimised
    (``generator_lr`` is the pixel learning rate, ``num_generator_steps`` the pixel updates per
    batch); for "fast" they apply to the meta-learned generator fed with ``noise_dim`` random inputs."""

    method: str = "nayer"  # "nayer", "deepinversion" or "fast"
    batch_size: int = 400  # images per synthesis batch
    num_generator_steps: int = 30  # generator/noisy-layer (or pixel) updates per synthesis batch
    batches_per_epoch: int = 2  # synthesis batches per epoch after warm-up
    warmup_batches_per_epoch: int = 10  # synthesis batches per warm-up epoch
    generator_lr: float = 4e-3
    generator_betas: tuple[float, float] = (0.5, 0.999)
    generator_width: int = 64
    generator_life_epochs: int = 10  # the generator is re-created every this many epochs
    noise_dim: int = 1000
    noisy_layer_init: str = "normal"  # "normal" (published) or "kaiming_uniform"
    noisy_layer_batchnorm: bool = True
    # Ablation switches of NAYER (paper Table 4); the defaults are the method.
    generator_input: str = "lte"  # "lte", "noise", "onehot", "lte_cat_noise" or "lte_plus_noise"
    noise_beta: float = 1.0  # beta of "lte_plus_noise": e_y + beta * z
    noisy_layer: str = "k_to_1"  # "k_to_1" (one linear per copy of the K classes), "one_to_one" or "none"
    noisy_layer_reinit: bool = True  # False: the noisy linears are learned on, never re-drawn
    ce_loss_weight: float = 0.5
    bn_loss_weight: float = 10.0
    adv_loss_weight: float = 1.33
    bn_momentum: float = 0.9
    first_bn_multiplier: float = 1.0
    crop_padding: int = 4  # pixels
    flip: bool = True
    roll_jitter: int = 0  # pixels; random roll of up to this many pixels per axis (ImageNet: image_size // 8)
    resized_crop_scale: tuple[float, ...] = ()  # (min, max) area of a random resized crop instead of the padded crop
    shared_generator: bool = False  # one generator for all processes: same initial weights, gradients all-reduced
    # Baselines only.
    tv_loss_weight: float = 0.0  # DeepInversion: weight of the total-variation (l2) image prior
    l2_loss_weight: float = 0.0  # DeepInversion: weight of the l2 norm of the (normalised) pixels
    latent_lr: float = 0.01  # Fast: learning rate of the per-batch random inputs z ("lr_z")
    meta_learning: str = "fomaml"  # Fast: "fomaml" (published default, is_maml=1) or "reptile"

    def validate(self) -> None:
        _check(self.method in SYNTHESIS_METHODS,
               f"synthesis.method must be one of {', '.join(SYNTHESIS_METHODS)}, got {self.method!r}")
        _check(self.generator_input in GENERATOR_INPUTS,
               f"synthesis.generator_input must be one of {', '.join(GENERATOR_INPUTS)}, got {self.generator_input!r}")
        _check(self.noisy_layer in ("k_to_1", "one_to_one", "none"),
               f"synthesis.noisy_layer must be k_to_1, one_to_one or none, got {self.noisy_layer!r}")
        _check(self.noise_beta >= 0, "synthesis.noise_beta must be >= 0")
        _check(self.meta_learning in ("fomaml", "reptile"),
               f"synthesis.meta_learning must be fomaml or reptile, got {self.meta_learning!r}")
        _check(self.tv_loss_weight >= 0 and self.l2_loss_weight >= 0 and self.latent_lr > 0,
               "synthesis.tv_loss_weight and l2_loss_weight must be >= 0, synthesis.latent_lr > 0")
        for name in ("batch_size", "num_generator_steps", "batches_per_epoch", "generator_width",
                     "generator_life_epochs", "noise_dim"):
            _check(getattr(self, name) > 0, f"synthesis.{name} must be positive, got {getattr(self, name)}")
        _check(self.warmup_batches_per_epoch >= 0, "synthesis.warmup_batches_per_epoch must be >= 0")
        _check(self.generator_lr > 0, "synthesis.generator_lr must be positive")
        _check(0.0 <= self.bn_momentum < 1.0, f"synthesis.bn_momentum must be in [0, 1), got {self.bn_momentum}")
        _check(self.noisy_layer_init in ("normal", "kaiming_uniform"),
               f"synthesis.noisy_layer_init must be normal or kaiming_uniform, got {self.noisy_layer_init!r}")
        _check(len(self.generator_betas) == 2, "synthesis.generator_betas takes two values, e.g. 0.5,0.999")
        _check(self.crop_padding >= 0, "synthesis.crop_padding must be >= 0")
        _check(self.roll_jitter >= 0, "synthesis.roll_jitter must be >= 0 pixels")
        _check_scale(self.resized_crop_scale, "synthesis.resized_crop_scale")
        _check(not self.shared_generator or self.method == "nayer",
               "synthesis.shared_generator applies to method=nayer only")


@dataclass
class DistillConfig:
    """Student training on the memory bank (NAYER Alg. 1, student loop)."""

    batch_size: int = 512
    steps_per_epoch: int = 400
    lr: float = 0.2
    lr_min: float = 2e-4  # cosine schedule floor
    momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature: float = 20.0
    crop_padding: int = 4
    flip: bool = True
    resized_crop_scale: tuple[float, ...] = ()  # (min, max) area of a random resized crop (ImageNet: 0.08, 1)

    def validate(self) -> None:
        _check_scale(self.resized_crop_scale, "distill.resized_crop_scale")
        for name in ("batch_size", "steps_per_epoch", "lr", "temperature"):
            _check(getattr(self, name) > 0, f"distill.{name} must be positive, got {getattr(self, name)}")
        _check(0 <= self.lr_min <= self.lr, "distill.lr_min must be in [0, distill.lr]")


@dataclass
class EvalConfig:
    """Held-out real evaluation data. Only the *test* split is ever read by a distillation run."""

    dataset: str = "fashion_mnist"  # "fashion_mnist", "cifar10", "cifar100", "imagenet" or "none"
    # folder of the dataset files; "" searches the standard places. imagenet: an ImageFolder of the
    # val split (one folder per class, sorted = class index) or webdataset val shards (folder of
    # .tar, one .tar, or a brace pattern), required.
    root: str = ""
    batch_size: int = 250  # 2x faster than 1000 per image on a 2-core CPU (ResNet-20: 8.6 vs 15.0 s per 10k)
    every_epochs: int = 1  # evaluate the student every this many epochs after warm-up (and at the end)
    resize: int = 0  # imagenet: shorter side before the centre crop; 0 = image_size / 0.875 (256 for 224)
    num_workers: int = 8  # imagenet: decoding workers per process

    def validate(self) -> None:
        _check(self.dataset in EVAL_DATASETS,
               f"eval.dataset must be one of {', '.join(EVAL_DATASETS)}, got {self.dataset!r}")
        _check(self.batch_size > 0 and self.every_epochs > 0, "eval.batch_size and eval.every_epochs must be positive")
        _check(self.dataset != "imagenet" or bool(self.root),
               "eval.dataset=imagenet needs eval.root: an ImageFolder of the val split or webdataset val shards")
        _check(self.resize >= 0 and self.num_workers >= 0, "eval.resize and eval.num_workers must be >= 0")


@dataclass
class RunConfig:
    """Infrastructure: run folder, schedule length, precision, resume, logging."""

    run_dir: str = "runs/nayer"
    epochs: int = 120  # total, warm-up included
    warmup_epochs: int = 20
    seed: int = 0
    # "auto" (by capability: bf16 on GPUs that have it, else fp16; bf16 on CPUs with AMX-BF16 /
    # AVX512-BF16, else fp32), "no", "bf16" or "fp16" (see nayer_scale.precision)
    mixed_precision: str = "auto"
    channels_last: str = "auto"  # "auto" (on: measured faster on GPU and CPU, fp32 and bf16), "true", "false"
    resume: bool = False  # continue from run_dir's latest checkpoint
    keep_checkpoints: int = 2
    tensorboard: bool = False
    progress: bool = True  # tqdm bars on the main process
    grid_per_class: int = 8  # images per class in the per-epoch sample grid
    cpu: bool = False  # force CPU even when a GPU is present
    cpu_threads: int = 0  # torch threads per process on CPU; 0 = the machine's cores / processes on this node
    kernels: str = "auto"  # "auto" (Triton on CUDA, else PyTorch reference), "triton" or "reference"; env NAYER_KERNELS wins
    compile: bool = False  # torch.compile the student and the teacher's KD forward (first steps pay the compile time)
    # SIGTERM / SIGUSR1 are acted on at the next safe point: after a synthesis batch, every this many
    # student steps, and at the end of an epoch (each check is one tiny all-reduce).
    safe_point_every_steps: int = 50
    # Memory-bank cache: "auto" (the training device when the whole bank fits, else host RAM, else
    # none), "device", "cpu" or "none" (samples are read from the shard files on every step).
    memory_cache: str = "auto"
    # cap on the cache per process in GiB; 0 = a quarter of the GPU's memory, or half of this
    # process's share of the available host RAM
    memory_cache_gb: float = 0.0

    def validate(self) -> None:
        _check(self.epochs > 0, "run.epochs must be positive")
        _check(0 <= self.warmup_epochs < self.epochs,
               f"run.warmup_epochs ({self.warmup_epochs}) must be in [0, run.epochs={self.epochs})")
        _check(self.mixed_precision in MIXED_PRECISIONS,
               f"run.mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {self.mixed_precision!r}")
        if isinstance(self.channels_last, bool):  # configs written before "auto" existed
            self.channels_last = "true" if self.channels_last else "false"
        self.channels_last = str(self.channels_last).lower()
        _check(self.channels_last in CHANNELS_LAST,
               f"run.channels_last must be auto, true or false, got {self.channels_last!r}")
        _check(self.keep_checkpoints >= 1, "run.keep_checkpoints must be >= 1")
        _check(self.cpu_threads >= 0, "run.cpu_threads must be >= 0 (0 = automatic)")
        _check(self.safe_point_every_steps > 0, "run.safe_point_every_steps must be positive")
        _check(self.memory_cache in ("auto", "device", "cpu", "none"),
               f"run.memory_cache must be auto, device, cpu or none, got {self.memory_cache!r}")
        _check(self.memory_cache_gb >= 0, "run.memory_cache_gb must be >= 0 (0 = automatic)")
        _check(self.kernels in ("auto", "triton", "reference"),
               f"run.kernels must be auto, triton or reference, got {self.kernels!r}")


@dataclass
class NayerConfig:
    """The whole run: teacher, student, LTE, synthesis, distillation, evaluation, infrastructure."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    lte: LTEConfig = field(default_factory=LTEConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "NayerConfig":
        """Check every section; raises ConfigError naming the field to change."""
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _convert(value: str, annotation: typing.Any, key: str) -> typing.Any:
    """Parse a command-line string into the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        item_type = args[0]
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


def apply_overrides(config: NayerConfig, overrides: list[str]) -> NayerConfig:
    """Apply ``section.key=value`` strings (e.g. ``synthesis.bn_loss_weight=5``) in order.

    Raises:
        ConfigError: for a malformed item, an unknown section or key, or a value of the wrong type.
    """
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path, value = item.split("=", 1)
        section_name, key = path.split(".", 1)
        if section_name not in {f.name for f in dataclasses.fields(config)}:
            raise ConfigError(f"unknown config section {section_name!r} in {item!r}; sections: "
                              f"{', '.join(f.name for f in dataclasses.fields(config))}")
        section = getattr(config, section_name)
        hints = typing.get_type_hints(type(section))
        if key not in hints:
            raise ConfigError(f"unknown key {path!r}; {section_name} has: {', '.join(sorted(hints))}")
        setattr(section, key, _convert(value, hints[key], path))
    return config


def config_from_dict(data: dict) -> NayerConfig:
    """Rebuild a NayerConfig from ``to_dict()`` output (e.g. the copy stored in a checkpoint)."""
    sections = {}
    for f in dataclasses.fields(NayerConfig):
        cls = f.default_factory  # type: ignore[misc]
        values = dict(data.get(f.name, {}))
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            if typing.get_origin(hints.get(key)) is tuple:
                values[key] = tuple(value)
        sections[f.name] = cls(**values)
    return NayerConfig(**sections)


# ----------------------------------------------------------------------------------------------
# Presets: published hyper-parameters (REFERENCE.md) and the CPU demo.

#: The Fashion-MNIST ResNet-20 teacher that ships with the package (trained on the real training set
#: by ``launch/train_teacher.py`` with its default settings; the record is the .json beside it).
DEMO_TEACHER = str(Path(__file__).resolve().parent / "assets" / "fashion_mnist_resnet20.safetensors")


def fashion_mnist() -> NayerConfig:
    """CPU demo: ResNet-20 teacher -> ResNet-8 student on Fashion-MNIST (28 px, 1 channel), sized so
    that the README's first command finishes within 15 minutes on 2 CPU cores without native bf16
    (fp32), student >= 88% top-1 (README "Measured results" has the measured numbers).

    Chosen by measurement on a 2-core AVX2 EPYC (benchmarks/results/fashion_mnist_tuning.md): one
    synthesis batch of 200 per epoch (two in the one warm-up epoch), 20 generator steps each, one
    generator for the whole run (``generator_life_epochs`` = epochs; the noisy layer is still
    re-initialised for every batch), and many small student steps (720 of batch 32 per epoch).
    Published: the loss weights, BN momentum, generator and noisy layer, KD temperature 20, student
    lr 0.1 with a cosine schedule. More generator steps per image beat more images, and smaller
    student batches with more steps beat larger ones, at equal wall time."""
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="resnet20", weights=DEMO_TEACHER,
                                class_names="fashion_mnist", mean=(0.2860,), std=(0.3530,), in_channels=1,
                                image_size=28)
    cfg.student = StudentConfig(arch="resnet8")
    cfg.synthesis = SynthesisConfig(batch_size=200, num_generator_steps=20, batches_per_epoch=1,
                                    warmup_batches_per_epoch=2, generator_width=32, crop_padding=2,
                                    generator_life_epochs=10)
    cfg.distill = DistillConfig(batch_size=32, steps_per_epoch=720, lr=0.1, crop_padding=2)
    cfg.eval = EvalConfig(every_epochs=2)  # 10,000 real test images, every other epoch and at the end
    # resume=True: running the same command again continues a stopped run, or reports a finished one.
    cfg.run = RunConfig(run_dir="runs/fashion_mnist", epochs=10, warmup_epochs=1, resume=True)
    return cfg


def cifar10() -> NayerConfig:
    """CIFAR-10, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (E=100 -> 120 epochs)."""
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="wrn40_2", class_names="cifar10", mean=(0.4914, 0.4822, 0.4465),
                                std=(0.2023, 0.1994, 0.2010), in_channels=3, image_size=32)
    cfg.student = StudentConfig(arch="wrn16_2")
    cfg.synthesis = SynthesisConfig(batch_size=400, num_generator_steps=30)
    cfg.distill = DistillConfig(batch_size=512, steps_per_epoch=400, lr=0.2)
    cfg.eval = EvalConfig(dataset="none")
    cfg.run = RunConfig(run_dir="runs/cifar10", epochs=120, warmup_epochs=20)
    return cfg


def cifar100() -> NayerConfig:
    """CIFAR-100, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (40 generator steps)."""
    cfg = cifar10()
    cfg.teacher.class_names = "cifar100"
    cfg.teacher.mean, cfg.teacher.std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    cfg.synthesis.num_generator_steps = 40
    cfg.run.run_dir = "runs/cifar100"
    return cfg


def tiny_imagenet() -> NayerConfig:
    """Tiny-ImageNet (64 px), resnet34 -> resnet18, published hyper-parameters (no flip)."""
    cfg = NayerConfig()
    cfg.teacher = TeacherConfig(arch="resnet34", class_names="tiny_imagenet", mean=(0.4802, 0.4481, 0.3975),
                                std=(0.2302, 0.2265, 0.2262), in_channels=3, image_size=64)
    cfg.student = StudentConfig(arch="resnet18")
    cfg.synthesis = SynthesisConfig(batch_size=200, num_generator_steps=60, batches_per_epoch=4,
                                    warmup_batches_per_epoch=20, flip=False)
    cfg.distill = DistillConfig(batch_size=256, steps_per_epoch=1000, lr=0.1, flip=False)
    cfg.eval = EvalConfig(dataset="none")
    cfg.run = RunConfig(run_dir="runs/tiny_imagenet", epochs=120, warmup_epochs=20)
    return cfg


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
    cfg.student = StudentConfig(arch="tv_resnet50")
    cfg.synthesis = SynthesisConfig(batch_size=256, num_generator_steps=60, batches_per_epoch=2,
                                    warmup_batches_per_epoch=10, generator_width=64, roll_jitter=224 // 8,
                                    crop_padding=4, flip=True)
    cfg.distill = DistillConfig(batch_size=256, steps_per_epoch=500, lr=0.1, resized_crop_scale=(0.08, 1.0))
    cfg.eval = EvalConfig(dataset="none", batch_size=250, every_epochs=10)  # 50,000 val images: not every epoch
    # resume=True: after a preemption the same command continues the run.
    cfg.run = RunConfig(run_dir="runs/imagenet_r50", epochs=320, warmup_epochs=20, grid_per_class=1, resume=True)
    return cfg


def imagenet_r50_r18() -> NayerConfig:
    """``imagenet_r50`` with a torchvision ResNet-18 student."""
    cfg = imagenet_r50()
    cfg.student.arch, cfg.run.run_dir = "tv_resnet18", "runs/imagenet_r50_r18"
    return cfg


def imagenet_r50_mbv2() -> NayerConfig:
    """``imagenet_r50`` with a torchvision MobileNetV2 student (student lr 0.05)."""
    cfg = imagenet_r50()
    cfg.student.arch, cfg.distill.lr, cfg.run.run_dir = "tv_mobilenet_v2", 0.05, "runs/imagenet_r50_mbv2"
    return cfg


def imagenet_r50_smoke() -> NayerConfig:
    """``imagenet_r50`` shrunk to seconds on a CPU: random-weight ResNet-50 teacher and student,
    32 px, synthesis batches of 16 (rotating class slices), 2 generator steps, 3 epochs (1 warm-up),
    the weight-free hashed text encoder, the memory bank read straight from its shards. The code
    path of the full preset, for tests and for checking a machine before a long run."""
    cfg = imagenet_r50()
    cfg.teacher.weights, cfg.teacher.image_size = "", 32
    s = cfg.synthesis
    s.batch_size, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = 16, 2, 2, 1
    s.generator_width, s.noise_dim, s.roll_jitter = 8, 32, 32 // 8
    cfg.lte.encoder = "hashed:64"
    cfg.distill.batch_size, cfg.distill.steps_per_epoch = 8, 3
    cfg.eval.batch_size = 16
    cfg.run = RunConfig(run_dir="runs/imagenet_r50_smoke", epochs=3, warmup_epochs=1, grid_per_class=1,
                        memory_cache="none", safe_point_every_steps=1, resume=True)
    return cfg


def as_deepinversion(cfg: NayerConfig, steps: int = 2000) -> NayerConfig:
    """Turn a NAYER preset into DeepInversion (Yin et al., CVPR 2020) on the same teacher, student
    and student schedule: ``steps`` Adam updates (lr 0.1, betas 0.5/0.99; DataFree toolbox CIFAR
    scripts) of the pixels of each batch, loss weights bn 10, ce 1, adv 1, image priors tv_l2 1e-4
    and l2 1e-5 and first-BN multiplier 10 (NVlabs), no BN-statistics momentum, no warm-up, one
    synthesis batch per epoch. ``steps`` is 2000 in the published CIFAR runs."""
    s = cfg.synthesis
    s.method, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = "deepinversion", steps, 1, 0
    s.generator_lr, s.generator_betas = 0.1, (0.5, 0.99)
    s.bn_loss_weight, s.ce_loss_weight, s.adv_loss_weight = 10.0, 1.0, 1.0
    s.tv_loss_weight, s.l2_loss_weight, s.first_bn_multiplier, s.bn_momentum = 1e-4, 1e-5, 10.0, 0.0
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
    s.generator_lr, s.latent_lr, s.meta_learning = 3e-3, 0.01, "fomaml"
    s.adv_loss_weight, s.bn_loss_weight, s.ce_loss_weight, s.bn_momentum = 1.1, 10.0, 0.4, 0.9
    cfg.run.run_dir += "_fast"
    return cfg


def fashion_mnist_deepinversion() -> NayerConfig:
    """DeepInversion on the Fashion-MNIST CPU demo: 200 pixel steps per batch instead of the
    published 2000, so that a run that converges fits a CPU session (see benchmarks/gpu_hours.py)."""
    return as_deepinversion(fashion_mnist(), steps=200)


PRESETS: dict[str, typing.Callable[[], NayerConfig]] = {
    "fashion_mnist": fashion_mnist,
    "fashion_mnist_deepinversion": fashion_mnist_deepinversion,
    "fashion_mnist_fast": lambda: as_fast(fashion_mnist()),
    "cifar10": cifar10,
    "cifar10_deepinversion": lambda: as_deepinversion(cifar10()),
    "cifar10_fast": lambda: as_fast(cifar10()),
    "cifar100": cifar100,
    "cifar100_deepinversion": lambda: as_deepinversion(cifar100()),
    "cifar100_fast": lambda: as_fast(cifar100()),
    "tiny_imagenet": tiny_imagenet,
    "imagenet_r50": imagenet_r50,
    "imagenet_r50_r18": imagenet_r50_r18,
    "imagenet_r50_mbv2": imagenet_r50_mbv2,
    "imagenet_r50_smoke": imagenet_r50_smoke,
}


def get_preset(name: str) -> NayerConfig:
    """A fresh NayerConfig for a named preset; ConfigError lists the names for an unknown one."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]()
