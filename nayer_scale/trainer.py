"""The NAYER trainer, driven by HF Accelerate: one code path for one process and for many (DDP).

Algorithm 1 of NAYER (Tran et al., CVPR 2024) with the published code's details (REFERENCE.md):

    for epoch in 0 .. E-1:
        re-create the generator every ``generator_life_epochs`` epochs
        for each synthesis batch of the epoch (``warmup_batches_per_epoch`` during warm-up):
            re-initialise the noisy linears; a new Adam over generator + noisy layer
            ``num_generator_steps`` updates on L_Z; keep the batch with the lowest loss
        write the epoch's batches as one memory-bank shard per process
        after warm-up: ``steps_per_epoch`` student steps on KD loss over the memory bank

Each process synthesises its own batches (own RNG stream, generator and noisy layer) and writes its
own shards; the student is DDP-wrapped and trains over the union of all processes' shards, with the
same number of steps on every process. A checkpoint at the end of every epoch lets ``run.resume``
continue exactly; the memory bank is cut back to the checkpoint's manifest on resume.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import InitProcessGroupKwargs
from torch import nn
from tqdm.auto import tqdm

from nayer_kernels import select_backend

from .augment import BatchAugment
from .config import ConfigError, NayerConfig
from .data import find_eval_data, load_eval_data
from .data.imagenet import check_imagenet_eval, imagenet_eval_loader
from .losses import BNStatsHooks, kd_loss
from .lte import get_class_names, load_or_build_lte
from .memory import MemoryBank
from .metrics import feature_diversity, lte_nearest_classes
from .models import build_model, get_classifier
from .precision import resolve_precision
from .synthesis import (SynthesisContext, batches_before_epoch, build_synthesizer, class_ordered_labels,
                        rotating_class_slice)
from .teacher import build_teacher, save_model
from .visualize import save_sample_grid

__all__ = ["NayerTrainer", "Preempted", "build_accelerator", "resolve_class_names"]

# Sections that must not change between a checkpoint and its resume (they define what was built).
_FROZEN_SECTIONS = ("teacher", "student", "lte", "synthesis")
_CKPT_NAME = re.compile(r"epoch-(\d+)(?:-b(\d+)-s(\d+))?")


def resolve_class_names(spec: str) -> list[str]:
    """Class names from a dataset key ("fashion_mnist", "cifar10", ...) or a .txt file (one per line).

    Raises:
        FileNotFoundError: ``spec`` looks like a path (has a separator or .txt) and does not exist.
        ValueError: unknown dataset key, or an empty / duplicated list.
    """
    if spec.endswith(".txt") or os.sep in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"class-name file {path} does not exist")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = get_class_names(spec)
    if not names:
        raise ValueError(f"no class names in {spec!r}")
    return names


class Preempted(Exception):
    """Raised inside ``NayerTrainer.fit`` once every process has checkpointed after SIGTERM/SIGUSR1."""


def build_accelerator(run) -> Accelerator:
    """The Accelerator of a run (``run``: the RunConfig): mixed precision, CPU forcing, trackers.

    Process groups use gloo when there is no GPU (what DeepSpeed on CPU needs too). Under
    ``accelerate launch --use_deepspeed`` the DeepSpeed plugin comes from the launcher; its "auto"
    micro-batch size is filled in by the trainer (there is no DataLoader to infer it from).

    Autocast and loss scaling are the trainer's own (``nayer_scale.precision``): accelerate's fp16
    needs a GPU, and synthesis needs a scaler per optimised quantity. So the Accelerator runs with
    mixed_precision "no", except under DeepSpeed, whose engine takes the (resolved) precision from it.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a single process has no process group
    cpu = run.cpu or not torch.cuda.is_available()
    kwargs = [InitProcessGroupKwargs(backend="gloo")] if distributed and cpu else []
    extra = {"dynamo_backend": "inductor"} if run.compile else {}  # accelerate compiles the prepared student
    mixed = "no"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        mixed = resolve_precision(run.mixed_precision, run.channels_last, "cpu" if cpu else "cuda").mixed_precision
    return Accelerator(mixed_precision=mixed, cpu=run.cpu, kwargs_handlers=kwargs,
                       log_with="tensorboard" if run.tensorboard else None, project_dir=str(run.run_dir), **extra)


class _PhaseTimer:
    """Wall-clock seconds per phase; synchronises CUDA at phase boundaries so times are real."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self._open: list[tuple[str, float]] = []  # phases being timed (nested: a checkpoint inside distillation)

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        self._open.append((phase, start))
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._open.pop()
            self.add(phase, time.perf_counter() - start)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def snapshot(self) -> dict[str, float]:
        """Seconds per phase including the running part of the outermost open phase (what a
        checkpoint taken at a mid-epoch safe point must carry; nested phases are inside it)."""
        seconds = dict(self.seconds)
        if self._open:
            phase, start = self._open[0]
            inner = sum(time.perf_counter() - t for _, t in self._open[1:2])  # counted by the inner phase later
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start - inner
        return seconds


class NayerTrainer:
    """Data-free distillation of a teacher into a student with NAYER.

    Everything that can be wrong with the input (config values, teacher file, class count, missing
    evaluation data, an existing run folder without ``run.resume``) raises before any synthesis.

    Args:
        config: the run's NayerConfig (validated here).
        accelerator: an existing Accelerator; by default one is built from ``config.run``.

    Raises:
        ConfigError, FileNotFoundError, nayer_scale.teacher.TeacherLoadError, ValueError.
    """

    def __init__(self, config: NayerConfig, accelerator: Accelerator | None = None) -> None:
        self.session_start = time.perf_counter()
        # start_time moves back by the wall time of earlier sessions when a run is resumed.
        self.start_time = self.session_start
        self.cfg = config.validate()
        run = self.cfg.run
        self.run_dir = Path(run.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.accelerator = accelerator or build_accelerator(run)
        acc = self.accelerator
        self.deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
        self._check_run_dir()
        acc.wait_for_everyone()  # every process has looked at run_dir before any of them writes there
        self.class_names = resolve_class_names(self.cfg.teacher.class_names)
        self.num_classes = len(self.class_names)
        if self.cfg.eval.dataset == "imagenet":  # fail now, not after an hour
            check_imagenet_eval(self.cfg.eval.root, self.num_classes)
        elif self.cfg.eval.dataset != "none":
            find_eval_data(self.cfg.eval.dataset, self.cfg.eval.root or None)
        self.device = acc.device
        self.device_kind = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                            else self.device.type)
        self.rank, self.world_size = acc.process_index, acc.num_processes
        # Chosen once per run from what the device runs fast, unless given explicitly.
        self.precision = resolve_precision(run.mixed_precision, run.channels_last, self.device)
        self._set_cpu_threads()
        self._seed_everything(run.seed)
        # Chosen once per run: Triton kernels on CUDA, PyTorch references elsewhere (run.kernels or
        # the NAYER_KERNELS environment variable force either).
        self.kernel_backend = select_backend(run.kernels)
        self.timer = _PhaseTimer(self.device)
        self._build_models()
        self._build_synthesis()
        self._build_student_training()
        self.eval_source = self._load_eval_data()  # checks the eval set fits the teacher before anything is written
        self.memory_cache = self._choose_memory_cache()
        self.memory = MemoryBank(self.run_dir / "memory", rank=self.rank, world_size=self.world_size,
                                 device=self.device, cache=self.memory_cache, progress=self._show_progress())
        self.start_epoch = 0
        self.history: list[dict] = []
        self.progress: dict | None = None  # position inside the current epoch (see run_epoch)
        self.stop_signal: int | None = None  # set by SIGTERM / SIGUSR1
        latest = self.latest_checkpoint() if run.resume else None
        if latest is not None:
            self.load_checkpoint(latest)
        elif run.resume:  # stopped before its first checkpoint: start over, dropping its shards
            self.memory.load_state_dict({"manifests": {}})
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.run_dir / "config.json",
                               {**self.cfg.to_dict(), "resolved": {"precision": self.precision.to_dict()}})
            if self.lte is not None:  # the inter-class structure of the LTE pool, next to the run
                _write_json_atomic(self.run_dir / "lte_neighbours.json",
                                   lte_nearest_classes(self.lte.cpu(), self.class_names, k=3))
            if run.tensorboard:
                acc.init_trackers("nayer", config=_flat_config(self.cfg))
        acc.print(f"nayer-scale: {self.cfg.synthesis.method} synthesis, {self.world_size} process(es) on "
                  f"{self.device_kind} ({torch.get_num_threads()} CPU threads each), "
                  f"precision={self.precision.mixed_precision}, channels_last={self.precision.channels_last} "
                  f"({self.precision.reason}), kernels (BN-statistics loss, noisy-layer re-init): "
                  f"{self.kernel_backend}, student {'DeepSpeed ZeRO-2' if self.deepspeed else 'DDP'}, "
                  f"memory-bank cache: {self.memory_cache}")
        # Everything above (models, LTE, data, checkpoint loading) counts as set-up time.
        self.timer.add("setup", time.perf_counter() - self.session_start)

    # ------------------------------------------------------------------------------------------
    # Construction

    def _show_progress(self) -> bool:
        return self.cfg.run.progress and self.accelerator.is_local_main_process

    def _check_run_dir(self) -> None:
        has_run = (self.run_dir / "memory").exists() or self.ckpt_dir.exists()
        if has_run and not self.cfg.run.resume:
            raise ConfigError(
                f"{self.run_dir} already holds a run (memory bank or checkpoints). Pass run.resume=true to "
                "continue it, or choose a new run.run_dir; nothing was changed."
            )

    def _set_cpu_threads(self) -> None:
        # `accelerate launch` sets OMP_NUM_THREADS=1 unless told otherwise, which halves the speed of
        # a single CPU process on a 2-core machine: share the cores among this node's processes.
        if self.device.type != "cpu":
            return
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.accelerator.num_processes))
        threads = self.cfg.run.cpu_threads or max(1, (os.cpu_count() or 1) // max(1, local))
        torch.set_num_threads(threads)

    def _seed_everything(self, seed: int) -> None:
        # Each process gets its own stream (own synthesis batches); DDP broadcasts the student's
        # initial weights from process 0, so the student still starts identical everywhere.
        process_seed = seed * 1_000_003 + self.rank
        random.seed(process_seed)
        np.random.seed(process_seed % 2**32)
        torch.manual_seed(process_seed)
        self.rng = torch.Generator(device=self.device).manual_seed(process_seed + 17)

    def _build_models(self) -> None:
        t = self.cfg.teacher
        with self.accelerator.main_process_first():  # a hub download happens once, the others read the cache
            self.teacher = build_teacher(t.arch, t.weights or None, self.num_classes, t.in_channels,
                                         require_weights=bool(t.weights)).to(self.device)
        with torch.no_grad():
            probe = torch.zeros(2, t.in_channels, t.image_size, t.image_size, device=self.device)
            out = self.teacher(probe)
        if out.shape != (2, self.num_classes):
            raise ValueError(f"teacher output on {t.image_size}px input has shape {tuple(out.shape)}, "
                             f"expected (2, {self.num_classes})")
        self.student = build_model(self.cfg.student.arch, self.num_classes, t.in_channels).to(self.device)
        if self.precision.channels_last:
            self.teacher.to(memory_format=torch.channels_last)
            if not self.deepspeed:  # ZeRO flattens the parameters into contiguous buffers: NCHW views only
                self.student.to(memory_format=torch.channels_last)
        self.hooks = BNStatsHooks(self.teacher, self.cfg.synthesis.bn_momentum,
                                  self.cfg.synthesis.first_bn_multiplier, self.kernel_backend)

    def _build_synthesis(self) -> None:
        s, t = self.cfg.synthesis, self.cfg.teacher
        self.lte = None
        if s.method == "nayer" and s.generator_input.startswith("lte"):  # only these need a text encoder
            with self.accelerator.main_process_first():  # the main process fills the cache first
                cache = self.cfg.lte.cache_dir
                self.lte = load_or_build_lte(self.class_names, self.cfg.lte.encoder, self.cfg.lte.template,
                                             os.path.expanduser(cache) if cache else None,
                                             log=self.accelerator.print).to(self.device)
        self.synth_augment = BatchAugment(t.mean, t.std, s.crop_padding, s.flip, roll=s.roll_jitter,
                                          resized_crop=s.resized_crop_scale or None).to(self.device)
        context = SynthesisContext(
            teacher=self.teacher, hooks=self.hooks, augment=self.synth_augment, config=s,
            precision=self.precision, rng=self.rng, device=self.device,
            image_shape=(t.in_channels, t.image_size, t.image_size),
            run_seed=self.cfg.run.seed, rank=self.rank,
            all_reduce=self._average_across_processes if s.shared_generator and self.world_size > 1 else None)
        self.synthesizer = build_synthesizer(context, self.lte, self.num_classes, t.mean, t.std, self.kernel_backend)

    def _build_student_training(self) -> None:
        d, run = self.cfg.distill, self.cfg.run
        optimizer = torch.optim.SGD(self.student.parameters(), lr=d.lr, momentum=d.momentum,
                                    weight_decay=d.weight_decay)
        # One scheduler step per post-warm-up epoch (published code); stepped by hand, not prepared,
        # because a prepared scheduler steps once per process. Built on the plain SGD: DeepSpeed's
        # ZeRO optimizer keeps using its param groups, so the learning rate set here is the one used.
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, run.epochs - run.warmup_epochs), eta_min=d.lr_min)
        if self.deepspeed:  # "auto" cannot be inferred: there is no DataLoader (the memory bank samples)
            ds_config = self.accelerator.state.deepspeed_plugin.deepspeed_config
            ds_config["train_micro_batch_size_per_gpu"] = d.batch_size
            ds_config.setdefault("gradient_accumulation_steps", 1)
            # accelerate fills a missing / "auto" gradient_clipping with 1.0 (DeepSpeed's default is
            # 1.0 too): NAYER does not clip, so say so explicitly.
            ds_config["gradient_clipping"] = 0.0
        self.student, self.optimizer = self.accelerator.prepare(self.student, optimizer)
        # fp16: dynamic loss scaling of the student's loss (DeepSpeed's engine scales its own).
        self.student_scaler = (self.precision.grad_scaler() if not self.deepspeed
                               else torch.amp.GradScaler(self.device.type, enabled=False))
        # The teacher's KD forward is compiled too; synthesis keeps it eager (BN hooks change per call).
        self.teacher_kd = torch.compile(self.teacher) if run.compile else self.teacher
        self.student_augment = BatchAugment(self.cfg.teacher.mean, self.cfg.teacher.std, d.crop_padding,
                                            d.flip, resized_crop=d.resized_crop_scale or None).to(self.device)

    def _load_eval_data(self):
        """A callable yielding this process's evaluation batches (uint8 (B, C, H, W), int64 (B,)),
        or None without an eval set. Checks that the data fits the teacher before anything runs."""
        e, t = self.cfg.eval, self.cfg.teacher
        if e.dataset == "none":
            return None
        if e.dataset == "imagenet":
            if t.in_channels != 3:
                raise ValueError(f"eval.dataset=imagenet gives RGB images, the teacher takes {t.in_channels} channels")
            resize = e.resize or round(t.image_size / 0.875)

            def imagenet_batches():
                return imagenet_eval_loader(e.root, self.rank, self.world_size, e.batch_size, resize=resize,
                                            crop=t.image_size, num_workers=e.num_workers,
                                            num_classes=self.num_classes)

            return imagenet_batches
        images, labels = load_eval_data(e.dataset, e.root or None)
        if images.shape[1:] != (t.in_channels, t.image_size, t.image_size):
            raise ValueError(f"eval.dataset {e.dataset} has images of shape {tuple(images.shape[1:])}, "
                             f"the teacher takes ({t.in_channels}, {t.image_size}, {t.image_size})")
        if int(labels.max()) >= self.num_classes:
            raise ValueError(f"eval.dataset {e.dataset} has label {int(labels.max())}, "
                             f"the teacher has {self.num_classes} classes")
        # Every process evaluates its own slice; the counts are summed across processes.
        images = images[self.rank :: self.world_size].to(self.device)
        labels = labels[self.rank :: self.world_size].to(self.device)
        return lambda: [(images[i : i + e.batch_size], labels[i : i + e.batch_size])  # views: a sized list
                        for i in range(0, len(labels), e.batch_size)]

    def projected_memory_bytes(self) -> int:
        """Bytes of the whole memory bank at the end of the run (uint8 images of all processes)."""
        s, run, t = self.cfg.synthesis, self.cfg.run, self.cfg.teacher
        batches = batches_before_epoch(run.epochs, run.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
        return batches * s.batch_size * self.world_size * t.in_channels * t.image_size**2

    def _choose_memory_cache(self) -> str:
        """``run.memory_cache``, or for "auto": the training device when the projected bank fits a
        quarter of its memory (CUDA) or the cap, else host RAM when it fits half of this process's
        share of the available RAM (or the cap), else "none" (read from the shards)."""
        run = self.cfg.run
        if run.memory_cache != "auto":
            return run.memory_cache
        need, cap = self.projected_memory_bytes(), run.memory_cache_gb * 2**30
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            if need <= min(cap or 0.25 * total, free):
                return "device"
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        if need <= (cap or 0.5 * psutil.virtual_memory().available / max(1, local)):
            return "device" if self.device.type == "cpu" else "cpu"
        return "none"

    # ------------------------------------------------------------------------------------------
    # The method

    def synthesis_labels(self, epoch: int, batch_index: int) -> torch.Tensor:
        """Pseudo labels (B,) int64 of this process's synthesis batch ``batch_index`` of ``epoch``:
        class-ordered copies of the K classes when B >= K, otherwise the rotating class slice of
        global slot (batches before this one) * world_size + rank (``nayer_scale.synthesis.labels``),
        so that across processes and steps every class is synthesised equally often."""
        s, run = self.cfg.synthesis, self.cfg.run
        if s.batch_size >= self.num_classes:
            return class_ordered_labels(s.batch_size, self.num_classes, self.rng, self.device)
        before = batches_before_epoch(epoch, run.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
        slot = (before + batch_index) * self.world_size + self.rank
        return rotating_class_slice(slot, s.batch_size, self.num_classes, self.device)

    def _average_across_processes(self, tensors: list[torch.Tensor]) -> None:
        """In place: every tensor becomes its mean over all processes (shared generator option)."""
        flat = torch.cat([t.reshape(-1) for t in tensors])
        flat = self.accelerator.reduce(flat, reduction="mean")
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def synthesize(self, epoch: int, batch_index: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One synthesis batch with the configured method (``synthesis.method``; see
        ``nayer_scale.synthesis.methods``). The adversarial term is off during warm-up.

        Returns:
            images: (B, C, H, W) float32 in [0, 1], the lowest-loss batch seen (un-augmented).
            labels: (B,) int64 pseudo labels.
            losses: detached float32 scalars of the last step (loss, bn, ce, adv).
        """
        s = self.cfg.synthesis
        labels = self.synthesis_labels(epoch, batch_index)
        use_adv = s.adv_loss_weight > 0 and epoch >= self.cfg.run.warmup_epochs
        student = self.accelerator.unwrap_model(self.student).eval() if use_adv else None
        images, losses = self.synthesizer.synthesize(labels, epoch, batch_index, student)
        self.hooks.update_momentum()
        return images, labels, losses

    def distill(self) -> dict[str, torch.Tensor]:
        """Student steps of KD loss on batches from the memory bank, from the epoch's current
        position (``self.progress["distill_steps"]``) to ``distill.steps_per_epoch``; a safe point
        every ``run.safe_point_every_steps`` steps. Every process draws ``distill.batch_size``
        samples per step from the union of all processes' shards, whatever each process wrote."""
        d, progress = self.cfg.distill, self.progress
        self.student.train()
        total = torch.full((), progress["kd_sum"], device=self.device)
        every = self.cfg.run.safe_point_every_steps
        for step in range(progress["distill_steps"], d.steps_per_epoch):
            images, _ = self.memory.sample(d.batch_size, self.rng)
            inputs = self.student_augment(images, self.rng)
            if self.precision.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                with torch.no_grad():
                    teacher_logits = self.teacher_kd(inputs)
                loss = kd_loss(self.student(inputs), teacher_logits, d.temperature)
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(self.student_scaler.scale(loss))
            self.student_scaler.step(self.optimizer)  # fp16: skipped when a gradient is inf/nan
            self.student_scaler.update()
            total += loss.detach()
            if (step + 1) % every == 0 and step + 1 < d.steps_per_epoch:
                progress["distill_steps"], progress["kd_sum"] = step + 1, total.item()
                self.safe_point()
        progress["distill_steps"], progress["kd_sum"] = d.steps_per_epoch, total.item()
        if self.deepspeed:  # DDP broadcasts BN buffers every step; DeepSpeed never syncs them
            self._average_across_processes([b for b in self.accelerator.unwrap_model(self.student).buffers()
                                            if b.is_floating_point()])
        self.scheduler.step()
        return {"kd": total / d.steps_per_epoch}

    @torch.no_grad()
    def probe_synthetic(self, images: torch.Tensor, labels: torch.Tensor, student: bool) -> dict[str, float]:
        """Measures on a fresh synthetic batch, before the student has trained on it.

        Args:
            images: (N, C, H, W) float in [0, 1]; labels: (N,) pseudo labels.
            student: also measure teacher-student agreement.
        Returns:
            ``diversity``: ``nayer_scale.metrics.feature_diversity`` on the teacher's penultimate
            features (the input of its classifier), None when B <= K; with ``student``, ``agree`` / ``count``: how many
            images the student classifies as the teacher does (argmax), out of N.
        """
        captured, agree = [], 0
        handle = get_classifier(self.teacher).register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
        model = self.accelerator.unwrap_model(self.student)
        was_training = model.training
        model.eval()
        try:
            for i in range(0, len(labels), self.cfg.eval.batch_size):
                x = self.student_augment.normalize(images[i : i + self.cfg.eval.batch_size])
                with self.precision.autocast():
                    teacher_pred = self.teacher(x).argmax(1)
                    if student:
                        agree += int((model(x).argmax(1) == teacher_pred).sum())
        finally:
            handle.remove()
            model.train(was_training)
        # Within-class diversity needs two images of a class in the batch: none with rotating class
        # slices (B <= K, ImageNet), where it is left out.
        diversity = (feature_diversity(torch.cat(captured).flatten(1).float(), labels).item()
                     if len(labels) > self.num_classes else None)
        return {"diversity": diversity, "agree": agree, "count": len(labels) if student else 0}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float | None:
        """Top-1 accuracy (fraction in [0, 1]) of ``model`` on the real test split; every process
        evaluates its share and the counts are summed over processes. None without an eval set."""
        if self.eval_source is None:
            return None
        normalize = self.student_augment.normalize
        was_training = model.training
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        total = torch.zeros((), device=self.device, dtype=torch.long)
        batches = tqdm(self.eval_source(), desc="evaluating", unit="batch", leave=False,
                       disable=not self._show_progress())
        for images, labels in batches:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            x = normalize(images.float() / 255.0)
            if self.precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                correct += (model(x).argmax(1) == labels).sum()
            total += len(labels)
        model.train(was_training)
        counts = self.accelerator.reduce(torch.stack([correct, total]), reduction="sum")
        self.eval_images = counts[1].item()  # over all processes: each image is evaluated once
        return counts[0].item() / max(1, counts[1].item())

    # ------------------------------------------------------------------------------------------
    # Epochs, safe points and the whole run

    def _new_progress(self, epoch: int) -> dict:
        """Where an epoch stands; checkpointed at mid-epoch safe points so that resume continues it."""
        return {"epoch": epoch, "synthesis_batches": 0, "distill_steps": 0, "kd_sum": 0.0, "ce_min": math.inf,
                "last_losses": {}, "diversity_sum": 0.0, "agree": 0, "agree_count": 0}

    def run_epoch(self, epoch: int) -> dict:
        """Synthesis (one memory-bank shard per synthesis batch) then, after warm-up, distillation
        and evaluation. Continues from ``self.progress`` when a mid-epoch checkpoint was resumed.

        Raises:
            Preempted: a stop was requested (SIGTERM / SIGUSR1) and the checkpoint is written.
        """
        run, s = self.cfg.run, self.cfg.synthesis
        warmup = epoch < run.warmup_epochs
        if self.progress is None or self.progress["epoch"] != epoch:
            self.progress = self._new_progress(epoch)
        progress = self.progress
        n_batches = s.warmup_batches_per_epoch if warmup else s.batches_per_epoch
        for b in range(progress["synthesis_batches"], n_batches):
            with self.timer("synthesis"):
                if b == 0:
                    self.synthesizer.start_epoch(epoch)
                images, labels, losses = self.synthesize(epoch, b)
            with self.timer("io"):
                self.memory.write(images, labels, {"epoch": epoch, "batch": b, "rank": self.rank})
                if b == n_batches - 1 and self.accelerator.is_main_process:
                    save_sample_grid(images, labels, self.num_classes,
                                     self.run_dir / "samples" / f"epoch-{epoch:04d}.png", run.grid_per_class)
            with self.timer("evaluation"):
                probe = self.probe_synthetic(images, labels, student=not warmup)
            progress["last_losses"] = {k: v.item() for k, v in losses.items()}
            progress["ce_min"] = min(progress["ce_min"], progress["last_losses"]["ce"])
            if probe["diversity"] is not None:
                progress["diversity_sum"] += probe["diversity"]
            progress["agree"] += probe["agree"]
            progress["agree_count"] += probe["count"]
            progress["synthesis_batches"] = b + 1
            if b + 1 < n_batches:
                self.safe_point()
        record: dict = {"epoch": epoch, "warmup": warmup}
        if n_batches:
            with self.timer("io"):
                self.accelerator.wait_for_everyone()  # every process's shards of this epoch are listed
                self.memory.refresh()
            record.update({f"synth_{k}": v for k, v in progress["last_losses"].items()})
            record["synth_ce_min"] = progress["ce_min"]
            # mean over the epoch's batches: collapse shows *within* a synthesis batch
            record["synth_diversity"] = (progress["diversity_sum"] / n_batches
                                         if s.batch_size > self.num_classes else None)
        record["memory_size"] = len(self.memory)
        if not warmup:
            if n_batches:  # held-out: the student has not trained on these batches yet
                counts = torch.tensor([progress["agree"], progress["agree_count"]], device=self.device)
                counts = self.accelerator.reduce(counts, reduction="sum")
                record["student_agreement"] = counts[0].item() / max(1, counts[1].item())
            with self.timer("distillation"):
                record.update({k: v.item() for k, v in self.distill().items()})
            record["lr"] = self.scheduler.get_last_lr()[0]
            last = epoch == run.epochs - 1
            if last or (epoch - run.warmup_epochs + 1) % self.cfg.eval.every_epochs == 0:
                with self.timer("evaluation"):
                    record["student_top1"] = self.evaluate(self.student)
        record.update(self.time_accounting())
        return record

    def _install_signal_handlers(self) -> dict:
        """SIGTERM and SIGUSR1 only set a flag; the run acts on it at the next safe point."""

        def request_stop(signum, frame):
            self.stop_signal = signum

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                previous[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    def stop_requested(self) -> bool:
        """True on every process when any process got SIGTERM / SIGUSR1 (a collective: every
        process must call it at the same points; one tiny all-reduce and a host sync)."""
        flag = torch.tensor([0.0 if self.stop_signal is None else 1.0], device=self.device)
        if self.world_size > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        return flag.item() > 0

    def safe_point(self) -> None:
        """Checkpoint the current position and raise Preempted if a stop was requested anywhere."""
        if self.stop_requested():
            with self.timer("checkpoint"):
                path = self.save_checkpoint(self.progress["epoch"], self.progress)
            raise Preempted(str(path))

    def time_accounting(self) -> dict:
        """Where the run's time went so far (this and earlier sessions of a resumed run).

        Returns a dict with: ``elapsed_s`` (wall-clock seconds), ``synthesis_s`` (synthesis only),
        ``phases_s`` (seconds per phase: setup, synthesis, io (memory bank, sample grids, logs),
        distillation, evaluation, checkpoint), ``num_devices`` (processes), ``device_kind`` (GPU
        name or "cpu"), ``device_hours`` = wall-clock hours x devices, and ``device_hours_unit``
        ("GPU-hours", or "CPU-hours" on CPU, where a device is one process and its share of the
        cores). Work lost to a crash (after the last checkpoint) is in neither session's time.
        """
        elapsed = time.perf_counter() - self.start_time
        return {
            "elapsed_s": elapsed,
            "synthesis_s": self.timer.seconds.get("synthesis", 0.0),
            "phases_s": dict(self.timer.seconds),
            "num_devices": self.world_size,
            "device_kind": self.device_kind,
            "device_hours": elapsed * self.world_size / 3600.0,
            "device_hours_unit": "GPU-hours" if self.device.type == "cuda" else "CPU-hours",
        }

    def fit(self) -> dict:
        """Run (or continue) all epochs; write checkpoints, metrics.jsonl, the exported student and
        summary.json. Returns the summary dict.

        SIGTERM or SIGUSR1 (to any process) stops the run at the next safe point: after a
        synthesis batch, every ``run.safe_point_every_steps`` student steps, or at the end of an
        epoch. Every process then writes its part of a checkpoint of that exact position and fit
        returns ``{"preempted": True, "checkpoint": path, "epoch": e}`` without a summary.json;
        running it again with ``run.resume=true`` continues from there.
        """
        acc, run = self.accelerator, self.cfg.run
        summary_path = self.run_dir / "summary.json"
        if self.start_epoch >= run.epochs and summary_path.is_file():
            acc.print(f"{self.run_dir} is complete: returning its summary unchanged")
            return json.loads(summary_path.read_text())
        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        previous_handlers = self._install_signal_handlers()
        try:
            with self.timer("evaluation"):
                teacher_top1 = self.evaluate(self.teacher)
            acc.print(f"teacher top-1 on the real test split: {teacher_top1}")
            bar = tqdm(range(self.start_epoch, run.epochs), initial=self.start_epoch, total=run.epochs,
                       desc="NAYER", disable=not self._show_progress())
            for epoch in bar:
                record = self.run_epoch(epoch)
                self.history.append(record)  # before the checkpoint, so that it holds this epoch's record
                self.progress = None
                with self.timer("checkpoint"):
                    path = self.save_checkpoint(epoch)
                with self.timer("io"):
                    self._log(record)
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items()
                                 if k in ("synth_loss", "kd", "student_top1") and v is not None})
                if epoch < run.epochs - 1 and self.stop_requested():
                    raise Preempted(str(path))
            return self._finish(teacher_top1)
        except Preempted as stop:
            acc.print(f"stop requested (signal {self.stop_signal}): checkpoint {stop} written; "
                      f"continue with run.resume=true")
            return {"preempted": True, "checkpoint": str(stop), "epoch": self.history[-1]["epoch"] if
                    self.history else None}
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)

    def heldout_agreement(self) -> float:
        """Top-1 agreement (fraction in [0, 1]) of the final student with the teacher on one extra
        synthesis batch per process that never enters the memory bank: the quality measure of a run
        without real evaluation data. Summed over processes."""
        images, labels, _ = self.synthesize(self.cfg.run.epochs, 0)
        probe = self.probe_synthetic(images, labels, student=True)
        counts = torch.tensor([probe["agree"], probe["count"]], device=self.device)
        counts = self.accelerator.reduce(counts, reduction="sum")
        return counts[0].item() / max(1, counts[1].item())

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.cfg.run.tensorboard:
                self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))},
                                     step=record["epoch"])

    def _finish(self, teacher_top1: float | None) -> dict:
        acc = self.accelerator
        final = [r for r in self.history if r.get("student_top1") is not None]
        if final:
            student_top1 = final[-1]["student_top1"]
        else:
            with self.timer("evaluation"):
                student_top1 = self.evaluate(self.student)
        with self.timer("evaluation"):
            agreement = self.heldout_agreement()
        with self.timer("checkpoint"):
            if acc.is_main_process:
                t = self.cfg.teacher
                meta = {"arch": self.cfg.student.arch, "num_classes": str(self.num_classes),
                        "in_channels": str(t.in_channels), "image_size": str(t.image_size),
                        "mean": json.dumps(t.mean), "std": json.dumps(t.std),
                        "class_names": json.dumps(self.class_names), "config": self.cfg.to_json()}
                save_model(acc.unwrap_model(self.student), self.run_dir / "student.safetensors", meta)
            if self.cfg.run.tensorboard:
                acc.end_training()
            acc.wait_for_everyone()
        times = self.time_accounting()
        summary = {
            "method": self.cfg.synthesis.method,
            "teacher_top1": teacher_top1,
            "student_top1": student_top1,
            "student_agreement": agreement,
            "eval_images": getattr(self, "eval_images", 0),
            "precision": self.precision.to_dict(),
            "wall_s": times["elapsed_s"],
            **{f"{phase}_s": sec for phase, sec in times["phases_s"].items()},
            "device_hours": times["device_hours"],
            "device_hours_unit": times["device_hours_unit"],
            "synthesis_device_hours": times["synthesis_s"] * self.world_size / 3600.0,
            "epochs": self.cfg.run.epochs,
            "num_processes": self.world_size,
            "device": str(self.device),
            "device_kind": self.device_kind,
            "memory_size": len(self.memory),
        }
        if acc.is_main_process:
            _write_json_atomic(self.run_dir / "summary.json", summary)
        acc.wait_for_everyone()
        return summary

    # ------------------------------------------------------------------------------------------
    # Checkpoints

    def latest_checkpoint(self) -> Path | None:
        """The folder named in checkpoints/latest, or None when there is no complete checkpoint."""
        pointer = self.ckpt_dir / "latest"
        if not pointer.is_file():
            return None
        return self.ckpt_dir / pointer.read_text().strip()

    def save_checkpoint(self, epoch: int, position: dict | None = None) -> Path:
        """Write checkpoints/epoch-XXXX (end of epoch) or, with ``position`` (``self.progress`` at a
        mid-epoch safe point), checkpoints/epoch-XXXX-bBBBB-sSSSSSSS (B synthesis batches and S
        student steps of epoch XXXX done) atomically: every process writes its own state into a
        temporary folder; process 0 adds the shared state, renames the folder and then updates the
        ``latest`` pointer. A crash at any point leaves the previous checkpoint intact."""
        acc = self.accelerator
        name = f"epoch-{epoch:04d}"
        if position is not None:
            name += f"-b{position['synthesis_batches']:04d}-s{position['distill_steps']:08d}"
        tmp = self.ckpt_dir / f"{name}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(self._process_state(), tmp / f"process-{self.rank:03d}.pt")
        if acc.is_main_process:
            torch.save({"epoch": epoch, "position": position, "config": self.cfg.to_dict(),
                        "world_size": self.world_size, "student": acc.unwrap_model(self.student).state_dict(),
                        "optimizer": None if self.deepspeed else self.optimizer.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "student_scaler": self.student_scaler.state_dict(),
                        "history": self.history,
                        "time": {"wall_s": time.perf_counter() - self.start_time, "phases": self.timer.snapshot()}},
                       tmp / "shared.pt")
        acc.wait_for_everyone()
        final = self.ckpt_dir / name
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _write_text_atomic(self.ckpt_dir / "latest", name)
            self._prune_checkpoints()
        acc.wait_for_everyone()
        return final

    def _process_state(self) -> dict:
        return {
            # ZeRO-2 partitions the optimizer state: each process keeps its own partition.
            "optimizer": self.optimizer.optimizer.state_dict() if self.deepspeed else None,
            "synthesizer": self.synthesizer.state_dict(),
            "bn_momentum": self.hooks.state_dict(),
            "memory": self.memory.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "trainer": self.rng.get_state()},
        }

    def _prune_checkpoints(self) -> None:
        def order(path: Path) -> tuple:  # a mid-epoch checkpoint comes before its epoch's end
            match = _CKPT_NAME.fullmatch(path.name)
            epoch, batches, steps = match.groups()
            return (int(epoch), 0, int(batches), int(steps)) if batches else (int(epoch), 1, 0, 0)

        done = sorted((p for p in self.ckpt_dir.glob("epoch-*") if p.is_dir() and _CKPT_NAME.fullmatch(p.name)),
                      key=order)
        for old in done[: -self.cfg.run.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> None:
        """Restore student, optimizer, scheduler, generator, noisy layer, BN momentum state, RNG
        streams and the memory bank (shards written after the checkpoint are discarded).

        Raises:
            ConfigError: the checkpoint was made with another teacher / student / LTE / synthesis
                config or another number of processes.
            FileNotFoundError: this process's state file is missing.
        """
        shared = torch.load(path / "shared.pt", map_location="cpu", weights_only=False)
        saved, now = shared["config"], self.cfg.to_dict()
        changed = [s for s in _FROZEN_SECTIONS if saved[s] != now[s]]
        if changed:
            raise ConfigError(f"cannot resume {path}: config sections {changed} differ from the checkpoint's")
        if shared["world_size"] != self.world_size:
            raise ConfigError(f"cannot resume {path}: it was written by {shared['world_size']} processes, "
                              f"this run has {self.world_size}")
        own = path / f"process-{self.rank:03d}.pt"
        if not own.is_file():
            raise FileNotFoundError(f"checkpoint state of process {self.rank} is missing: {own}")
        state = torch.load(own, map_location="cpu", weights_only=False)
        self.accelerator.unwrap_model(self.student).load_state_dict(shared["student"])
        self._load_optimizer_state(shared["optimizer"] if not self.deepspeed else state["optimizer"])
        self.scheduler.load_state_dict(shared["scheduler"])
        if shared.get("student_scaler"):  # empty for a disabled scaler (fp32 / bf16)
            self.student_scaler.load_state_dict(shared["student_scaler"])
        self.history = shared["history"]
        # Time accounting continues across sessions: wall_s and phase seconds include earlier ones.
        self.start_time -= shared["time"]["wall_s"]
        self.timer.seconds = dict(shared["time"]["phases"])
        if self.accelerator.is_main_process:  # drop lines of epochs after the checkpoint
            _write_text_atomic(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        self.synthesizer.load_state_dict(state["synthesizer"])
        self.hooks.load_state_dict(state["bn_momentum"])
        self.memory.load_state_dict(state["memory"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.set_state(rng["trainer"])
        position = shared.get("position")
        self.progress = position  # a mid-epoch checkpoint: run_epoch continues that epoch
        self.start_epoch = shared["epoch"] + (0 if position else 1)
        where = (f" at synthesis batch {position['synthesis_batches']}, student step {position['distill_steps']}"
                 if position else "")
        self.accelerator.print(f"resumed from {path} (next epoch {self.start_epoch}{where})")

    def _load_optimizer_state(self, state: dict) -> None:
        if state is None:
            raise ConfigError("the checkpoint holds no optimizer state for this launcher (DeepSpeed checkpoints "
                              "resume only under DeepSpeed, DDP checkpoints only without it)")
        if self.deepspeed:  # ZeRO reads entry [rank] of a per-process list (a rigid, same-size checkpoint)
            states = [None] * self.world_size
            states[self.rank] = state
            self.optimizer.optimizer.load_state_dict(states)
        else:
            self.optimizer.optimizer.load_state_dict(state)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, data: dict) -> None:
    _write_text_atomic(path, json.dumps(data, indent=2))


def _flat_config(cfg: NayerConfig) -> dict:
    return {f"{section}.{k}": (v if isinstance(v, (int, float, str, bool)) else str(v))
            for section, values in cfg.to_dict().items() for k, v in values.items()}
