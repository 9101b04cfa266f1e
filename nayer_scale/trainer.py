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
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from nayer_kernels import select_backend

from .augment import BatchAugment
from .config import ConfigError, NayerConfig
from .data import find_eval_data, load_eval_data
from .losses import BNStatsHooks, kd_loss
from .lte import get_class_names, load_or_build_lte
from .memory import MemoryBank
from .metrics import feature_diversity, lte_nearest_classes
from .models import build_model, get_classifier
from .synthesis import SynthesisContext, build_synthesizer
from .teacher import build_teacher, save_model
from .visualize import save_sample_grid

__all__ = ["NayerTrainer", "resolve_class_names"]

# Sections that must not change between a checkpoint and its resume (they define what was built).
_FROZEN_SECTIONS = ("teacher", "student", "lte", "synthesis")


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


class _PhaseTimer:
    """Wall-clock seconds per phase; synchronises CUDA at phase boundaries so times are real."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.add(phase, time.perf_counter() - start)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


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
        self.accelerator = accelerator or Accelerator(
            mixed_precision=run.mixed_precision,
            cpu=run.cpu,
            log_with="tensorboard" if run.tensorboard else None,
            project_dir=str(self.run_dir),
        )
        acc = self.accelerator
        self._check_run_dir()
        acc.wait_for_everyone()  # every process has looked at run_dir before any of them writes there
        self.class_names = resolve_class_names(self.cfg.teacher.class_names)
        self.num_classes = len(self.class_names)
        if self.cfg.eval.dataset != "none":
            find_eval_data(self.cfg.eval.dataset, self.cfg.eval.root or None)  # fail now, not after an hour
        self.device = acc.device
        self.device_kind = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                            else self.device.type)
        self.rank, self.world_size = acc.process_index, acc.num_processes
        self._set_cpu_threads()
        self._seed_everything(run.seed)
        # Chosen once per run: Triton kernels on CUDA, PyTorch references elsewhere (run.kernels or
        # the NAYER_KERNELS environment variable force either).
        self.kernel_backend = select_backend(run.kernels)
        self.timer = _PhaseTimer(self.device)
        self._build_models()
        self._build_synthesis()
        self._build_student_training()
        self.test_set = self._load_eval_data()  # checks the eval set fits the teacher before anything is written
        self.memory = MemoryBank(self.run_dir / "memory", rank=self.rank, world_size=self.world_size,
                                 device=self.device)
        self.start_epoch = 0
        self.history: list[dict] = []
        latest = self.latest_checkpoint() if run.resume else None
        if latest is not None:
            self.load_checkpoint(latest)
        elif run.resume:  # stopped before its first checkpoint: start over, dropping its shards
            self.memory.load_state_dict({"manifests": {}})
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(self.cfg.to_json())
            if self.lte is not None:  # the inter-class structure of the LTE pool, next to the run
                _write_json_atomic(self.run_dir / "lte_neighbours.json",
                                   lte_nearest_classes(self.lte.cpu(), self.class_names, k=3))
            if run.tensorboard:
                acc.init_trackers("nayer", config=_flat_config(self.cfg))
        acc.print(f"nayer-scale: {self.cfg.synthesis.method} synthesis, {self.world_size} process(es) on "
                  f"{self.device_kind} ({torch.get_num_threads()} CPU threads each), "
                  f"precision={run.mixed_precision}, kernels (BN-statistics loss, noisy-layer re-init): "
                  f"{self.kernel_backend}")
        # Everything above (models, LTE, data, checkpoint loading) counts as set-up time.
        self.timer.add("setup", time.perf_counter() - self.session_start)

    # ------------------------------------------------------------------------------------------
    # Construction

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
        self.teacher = build_teacher(t.arch, t.weights or None, self.num_classes, t.in_channels,
                                     require_weights=bool(t.weights)).to(self.device)
        with torch.no_grad():
            probe = torch.zeros(2, t.in_channels, t.image_size, t.image_size, device=self.device)
            out = self.teacher(probe)
        if out.shape != (2, self.num_classes):
            raise ValueError(f"teacher output on {t.image_size}px input has shape {tuple(out.shape)}, "
                             f"expected (2, {self.num_classes})")
        self.student = build_model(self.cfg.student.arch, self.num_classes, t.in_channels).to(self.device)
        if self.cfg.run.channels_last:
            self.teacher.to(memory_format=torch.channels_last)
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
                                             os.path.expanduser(cache) if cache else None).to(self.device)
        self.synth_augment = BatchAugment(t.mean, t.std, s.crop_padding, s.flip).to(self.device)
        context = SynthesisContext(
            teacher=self.teacher, hooks=self.hooks, augment=self.synth_augment, config=s,
            autocast=self.accelerator.autocast, rng=self.rng, device=self.device,
            image_shape=(t.in_channels, t.image_size, t.image_size), channels_last=self.cfg.run.channels_last,
            run_seed=self.cfg.run.seed, rank=self.rank)
        self.synthesizer = build_synthesizer(context, self.lte, self.num_classes, t.mean, t.std, self.kernel_backend)

    def _build_student_training(self) -> None:
        d, run = self.cfg.distill, self.cfg.run
        optimizer = torch.optim.SGD(self.student.parameters(), lr=d.lr, momentum=d.momentum,
                                    weight_decay=d.weight_decay)
        self.student, self.optimizer = self.accelerator.prepare(self.student, optimizer)
        # One scheduler step per post-warm-up epoch (published code); stepped by hand, not prepared,
        # because a prepared scheduler steps once per process.
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer.optimizer, T_max=max(1, run.epochs - run.warmup_epochs), eta_min=d.lr_min)
        self.student_augment = BatchAugment(self.cfg.teacher.mean, self.cfg.teacher.std, d.crop_padding,
                                            d.flip).to(self.device)

    def _load_eval_data(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.cfg.eval.dataset == "none":
            return None
        images, labels = load_eval_data(self.cfg.eval.dataset, self.cfg.eval.root or None)
        if images.shape[1:] != (self.cfg.teacher.in_channels, self.cfg.teacher.image_size, self.cfg.teacher.image_size):
            raise ValueError(f"eval.dataset {self.cfg.eval.dataset} has images of shape {tuple(images.shape[1:])}, "
                             f"the teacher takes ({self.cfg.teacher.in_channels}, {self.cfg.teacher.image_size}, "
                             f"{self.cfg.teacher.image_size})")
        if int(labels.max()) >= self.num_classes:
            raise ValueError(f"eval.dataset {self.cfg.eval.dataset} has label {int(labels.max())}, "
                             f"the teacher has {self.num_classes} classes")
        # Every process evaluates its own slice; the counts are summed across processes.
        return images[self.rank :: self.world_size].to(self.device), labels[self.rank :: self.world_size].to(self.device)

    # ------------------------------------------------------------------------------------------
    # The method

    def synthesis_labels(self) -> torch.Tensor:
        """Class-ordered pseudo labels (B,): [0..K-1] repeated B // K times, then B % K random ones."""
        b, k = self.cfg.synthesis.batch_size, self.num_classes
        extra = torch.randint(k, (b % k,), device=self.device, generator=self.rng)
        return torch.cat([torch.arange(k, device=self.device).repeat(b // k), extra])

    def synthesize(self, epoch: int, batch_index: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One synthesis batch with the configured method (``synthesis.method``; see
        ``nayer_scale.synthesis.methods``). The adversarial term is off during warm-up.

        Returns:
            images: (B, C, H, W) float32 in [0, 1], the lowest-loss batch seen (un-augmented).
            labels: (B,) int64 pseudo labels.
            losses: detached float32 scalars of the last step (loss, bn, ce, adv).
        """
        s = self.cfg.synthesis
        labels = self.synthesis_labels()
        use_adv = s.adv_loss_weight > 0 and epoch >= self.cfg.run.warmup_epochs
        student = self.accelerator.unwrap_model(self.student).eval() if use_adv else None
        images, losses = self.synthesizer.synthesize(labels, epoch, batch_index, student)
        self.hooks.update_momentum()
        return images, labels, losses

    def distill(self) -> dict[str, torch.Tensor]:
        """``distill.steps_per_epoch`` student steps of KD loss on batches from the memory bank."""
        d = self.cfg.distill
        self.student.train()
        total = torch.zeros((), device=self.device)
        for _ in range(d.steps_per_epoch):
            images, _ = self.memory.sample(d.batch_size, self.rng)
            inputs = self.student_augment(images, self.rng)
            if self.cfg.run.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with self.accelerator.autocast():
                with torch.no_grad():
                    teacher_logits = self.teacher(inputs)
                loss = kd_loss(self.student(inputs), teacher_logits, d.temperature)
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
            self.optimizer.step()
            total += loss.detach()
        self.scheduler.step()
        return {"kd": total / d.steps_per_epoch}

    @torch.no_grad()
    def synthetic_diversity(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """``nayer_scale.metrics.feature_diversity`` of synthetic images (N, C, H, W) in [0, 1]
        with labels (N,), on the teacher's penultimate features (the input of its classifier)."""
        captured = []
        handle = get_classifier(self.teacher).register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
        try:
            for i in range(0, len(labels), self.cfg.eval.batch_size):
                with self.accelerator.autocast():
                    self.teacher(self.student_augment.normalize(images[i : i + self.cfg.eval.batch_size]))
        finally:
            handle.remove()
        return feature_diversity(torch.cat(captured).flatten(1), labels).item()

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float | None:
        """Top-1 accuracy (fraction in [0, 1]) of ``model`` on the real test split, summed over processes."""
        if self.test_set is None:
            return None
        images, labels = self.test_set
        normalize = self.student_augment.normalize
        was_training = model.training
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for i in range(0, len(labels), self.cfg.eval.batch_size):
            x = normalize(images[i : i + self.cfg.eval.batch_size].float() / 255.0)
            with self.accelerator.autocast():
                correct += (model(x).argmax(1) == labels[i : i + self.cfg.eval.batch_size]).sum()
        model.train(was_training)
        counts = torch.stack([correct, torch.tensor(len(labels), device=self.device)])
        counts = self.accelerator.reduce(counts, reduction="sum")
        return counts[0].item() / max(1, counts[1].item())

    # ------------------------------------------------------------------------------------------
    # Epochs and the whole run

    def run_epoch(self, epoch: int) -> dict:
        """Synthesis (+ memory-bank shard) then, after warm-up, distillation and evaluation."""
        run, s = self.cfg.run, self.cfg.synthesis
        warmup = epoch < run.warmup_epochs
        record: dict = {"epoch": epoch, "warmup": warmup}
        with self.timer("synthesis"):
            self.synthesizer.start_epoch(epoch)
            n_batches = s.warmup_batches_per_epoch if warmup else s.batches_per_epoch
            batches = [self.synthesize(epoch, b) for b in range(n_batches)]
        if batches:
            with self.timer("io"):
                images = torch.cat([b[0] for b in batches])
                labels = torch.cat([b[1] for b in batches])
                self.memory.write(images, labels, {"epoch": epoch, "rank": self.rank})
                self.accelerator.wait_for_everyone()
                self.memory.refresh()
                record.update({f"synth_{k}": v.item() for k, v in batches[-1][2].items()})
                record["synth_ce_min"] = min(b[2]["ce"].item() for b in batches)
            with self.timer("evaluation"):
                # mean over the epoch's batches: collapse shows *within* a synthesis batch
                record["synth_diversity"] = sum(self.synthetic_diversity(b[0], b[1]) for b in batches) / len(batches)
            with self.timer("io"):
                if self.accelerator.is_main_process:
                    save_sample_grid(batches[-1][0], batches[-1][1], self.num_classes,
                                     self.run_dir / "samples" / f"epoch-{epoch:04d}.png", self.cfg.run.grid_per_class)
        record["memory_size"] = len(self.memory)
        if not warmup:
            with self.timer("distillation"):
                record.update({k: v.item() for k, v in self.distill().items()})
            record["lr"] = self.scheduler.get_last_lr()[0]
            last = epoch == run.epochs - 1
            if last or (epoch - run.warmup_epochs + 1) % self.cfg.eval.every_epochs == 0:
                with self.timer("evaluation"):
                    record["student_top1"] = self.evaluate(self.student)
        record.update(self.time_accounting())
        return record

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
        summary.json. Returns the summary dict."""
        acc, run = self.accelerator, self.cfg.run
        summary_path = self.run_dir / "summary.json"
        if self.start_epoch >= run.epochs and summary_path.is_file():
            acc.print(f"{self.run_dir} is complete: returning its summary unchanged")
            return json.loads(summary_path.read_text())
        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        with self.timer("evaluation"):
            teacher_top1 = self.evaluate(self.teacher)
        acc.print(f"teacher top-1 on the real test split: {teacher_top1}")
        bar = tqdm(range(self.start_epoch, run.epochs), initial=self.start_epoch, total=run.epochs,
                   desc="NAYER", disable=not (run.progress and acc.is_local_main_process))
        for epoch in bar:
            record = self.run_epoch(epoch)
            self.history.append(record)  # before the checkpoint, so that it holds this epoch's record
            with self.timer("checkpoint"):
                self.save_checkpoint(epoch)
            with self.timer("io"):
                self._log(record)
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in ("synth_loss", "kd", "student_top1")
                             and v is not None})
        return self._finish(teacher_top1)

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

    def save_checkpoint(self, epoch: int) -> Path:
        """Write checkpoints/epoch-XXXX atomically: every process writes its own state into a
        temporary folder; process 0 adds the shared state, renames the folder and then updates the
        ``latest`` pointer. A crash at any point leaves the previous checkpoint intact."""
        acc = self.accelerator
        name = f"epoch-{epoch:04d}"
        tmp = self.ckpt_dir / f"{name}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(self._process_state(), tmp / f"process-{self.rank:03d}.pt")
        if acc.is_main_process:
            torch.save({"epoch": epoch, "config": self.cfg.to_dict(), "world_size": self.world_size,
                        "student": acc.unwrap_model(self.student).state_dict(),
                        "optimizer": self.optimizer.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "history": self.history,
                        "time": {"wall_s": time.perf_counter() - self.start_time, "phases": dict(self.timer.seconds)}},
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
            "synthesizer": self.synthesizer.state_dict(),
            "bn_momentum": self.hooks.state_dict(),
            "memory": self.memory.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "trainer": self.rng.get_state()},
        }

    def _prune_checkpoints(self) -> None:
        done = sorted(p for p in self.ckpt_dir.glob("epoch-*") if p.is_dir() and not p.name.endswith(".tmp"))
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
        self.optimizer.optimizer.load_state_dict(shared["optimizer"])
        self.scheduler.load_state_dict(shared["scheduler"])
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
        self.start_epoch = shared["epoch"] + 1
        self.accelerator.print(f"resumed from {path} (next epoch {self.start_epoch})")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, data: dict) -> None:
    _write_text_atomic(path, json.dumps(data, indent=2))


def _flat_config(cfg: NayerConfig) -> dict:
    return {f"{section}.{k}": (v if isinstance(v, (int, float, str, bool)) else str(v))
            for section, values in cfg.to_dict().items() for k, v in values.items()}
