"""The NAYER trainer: orchestrates the components of a run, with HF Accelerate (one process or many).

Algorithm 1 of NAYER (Tran et al., CVPR 2024) as docs/method.md describes it:

    for epoch in 0 .. E-1:
        re-create the generator every ``generator_life_epochs`` epochs
        for each synthesis batch of the epoch (``warmup_batches_per_epoch`` during warm-up):
            re-initialise the noisy linears; a new Adam over generator + noisy layer
            ``num_generator_steps`` updates on L_Z; keep the batch with the lowest loss
            write it to the memory bank as one shard of this process
        after warm-up: ``steps_per_epoch`` student steps of KD loss on the memory bank, evaluation

The components (``nayer_scale.training``, built by ``build_components``) each do one job: the
synthesizer, label sampler and BN hooks (synthesis), the memory bank, the student engine (DDP or
DeepSpeed ZeRO-2), the evaluator and synthetic probe, the checkpoint manager over the Stateful
components, the run clock, the preemption guard, the metrics logger; each is one typed attribute of
the trainer. The phases are public for benchmarks and custom loops: ``synthesize_batch`` (one
synthesis batch into the memory bank), ``distill_steps`` (student steps on the memory bank),
``evaluate``, ``save_checkpoint``; ``fit`` runs them all. Each process synthesises its
own batches and writes its own shards; the student trains over the union of all shards. A
checkpoint at the end of every epoch (and at mid-epoch safe points on SIGTERM / SIGUSR1) lets
``run.resume`` continue exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from .collectives import Collectives
from .config import ConfigError, NayerConfig
from .memory import batch_seed
from .training import (
    Components,
    EpochProgress,
    Preempted,
    PreemptionGuard,
    apply_launcher_settings,
    bar_postfix,
    build_accelerator,
    build_components,
    epoch_bar,
)
from .training.finish import finish_run
from .training.run_lock import hold_run_folder
from .training.run_state import RunState
from .training.start import announce_run
from .training.summary import save_epoch_samples
from .training.trackers import global_step

__all__ = ["NayerTrainer", "Preempted", "build_accelerator"]


class NayerTrainer:
    """Data-free distillation of a teacher into a student with NAYER (or a baseline synthesis method).

    Everything that can be wrong with the input (config values, teacher file, class names, missing
    evaluation data, an existing run folder without ``run.resume``, a config changed since the
    checkpoint) raises before any synthesis.

    Args:
        config: the run's NayerConfig (validated here).
        accelerator: an existing Accelerator; by default one is built from ``config.run``.
        components: the run's components; by default built from the config (``build_components``).

    Attributes (the run's components, ``training.build_components``): ``teacher``, ``hooks`` (its BN
    statistics), ``lte`` ((K, D) float32 or None), ``synthesizer``, ``labels``, ``engine`` (the student),
    ``memory`` (the memory bank), ``evaluator``, ``probe``, ``checkpoints``, ``logger``, ``trackers``,
    ``clock``, ``rngs``, ``precision``, ``kernel_backend``, ``class_names``.

    Raises:
        ConfigError, FileNotFoundError, nayer_scale.models.io.TeacherLoadError, ValueError,
        nayer_scale.extras.MissingExtraError, training.run_lock.RunFolderInUse.
    """

    def __init__(
        self, config: NayerConfig, accelerator: Accelerator | None = None, components: Components | None = None
    ) -> None:
        start = time.perf_counter()
        self.cfg = config.validate()
        self.launched_with = apply_launcher_settings(
            self.cfg.run
        )  # accelerate launch --mixed_precision / --dynamo_backend
        self.run_dir = Path(self.cfg.run.run_dir)
        self.accelerator = acc = accelerator or build_accelerator(self.cfg.run)
        self.device, self.rank, self.world_size = acc.device, acc.process_index, acc.num_processes
        self.device_kind = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        self.collectives, self.trackers = Collectives(acc), None  # trackers: set with the other components
        self.run_lock = hold_run_folder(self.run_dir, acc)  # one job per run folder (training/run_lock.py)
        try:
            self._set_up(acc, components, start)
        except BaseException:
            self.close()
            raise

    def _set_up(self, acc: Accelerator, components: Components | None, start: float) -> None:
        """Everything ``__init__`` does once the run folder is this job's."""
        if ((self.run_dir / "memory").exists() or (self.run_dir / "checkpoints").exists()) and not self.cfg.run.resume:
            raise ConfigError(
                f"{self.run_dir} already holds a run (memory bank or checkpoints). Pass run.resume=true "
                "to continue it, or choose a new run.run_dir; nothing was changed."
            )
        acc.wait_for_everyone()  # every process has looked at run_dir before any of them writes there
        c = components or build_components(self.cfg, acc, self.collectives.average, start)
        self.trackers, self.precision, self.kernel_backend = c.trackers, c.precision, c.kernel_backend
        self.class_names, self.rngs, self.teacher, self.hooks = c.class_names, c.rngs, c.teacher, c.hooks
        self.lte, self.synthesizer, self.labels = c.lte, c.synthesizer, c.labels
        self.engine, self.memory, self.evaluator, self.probe = c.engine, c.memory, c.evaluator, c.probe
        self.checkpoints, self.logger, self.clock = c.checkpoints, c.logger, c.clock
        self.num_classes, self.rng = len(self.class_names), self.rngs.generator
        self.start_epoch, self.progress = 0, None  # progress: an EpochProgress inside an epoch
        self.eval_images = 0  # real images in the last evaluation, over all processes
        self.guard = PreemptionGuard(self.device, self.collectives.sum if self.world_size > 1 else None)
        self.state = RunState(self.cfg, c)  # what a checkpoint holds (training/run_state.py)
        changes = self._resume() if self.cfg.run.resume else []
        announce_run(self, c, changes)  # training/start.py
        self.clock.add("setup", time.perf_counter() - start)  # models, LTE, data, checkpoint loading

    def close(self) -> None:
        """End the tracker runs and give the run folder back (its lock); ``fit`` does this when it
        returns or raises."""
        if self.trackers is not None:  # set-up got as far as the components
            self.trackers.finish()
        if self.run_lock is not None:
            self.run_lock.release()

    @property
    def student(self):
        """The prepared student (DDP wrapper / DeepSpeed engine)."""
        return self.engine.model

    # -- the method ---------------------------------------------------------------------------

    def synthesis_labels(self, epoch: int, batch_index: int) -> torch.Tensor:
        """Pseudo labels (B,) int64 of this process's synthesis batch (``nayer_scale.synthesis.labels``)."""
        return self.labels(epoch, batch_index)

    def synthesize(self, epoch: int, batch_index: int, adversarial: bool = True):
        """One synthesis batch with the configured method; the adversarial term is on after
        warm-up (unless ``adversarial`` is False).

        Returns:
            images: (B, C, H, W) float32 in [0, 1], the lowest-loss batch seen (un-augmented);
            labels: (B,) int64 pseudo labels; losses: detached float32 scalars (loss, bn, ce, adv).
        """
        labels = self.synthesis_labels(epoch, batch_index)
        use_adv = adversarial and self.cfg.synthesis.adv_loss_weight > 0 and epoch >= self.cfg.run.warmup_epochs
        student = self.engine.unwrapped.eval() if use_adv else None
        images, losses = self.synthesizer.synthesize(labels, epoch, batch_index, student)
        self.hooks.update_momentum()
        return images, labels, losses

    def probe_synthetic(self, images: torch.Tensor, labels: torch.Tensor, student: bool):
        """``SyntheticProbe`` of a fresh batch, before the student trains on it: (diversity device
        scalar or None, agree int64 device scalar, images probed for agreement)."""
        return self.probe(images, labels, self.engine.unwrapped if student else None)

    def evaluate(self, model) -> float | None:
        """Top-1 (fraction in [0, 1]) of ``model`` on the real evaluation set; None without one."""
        result = self.evaluator(model)
        self.eval_images = result.images
        return result.top1

    def synthesize_batch(self, epoch: int, batch_index: int, store: bool = True):
        """One synthesis batch of ``epoch`` (batch 0 starts the epoch's generator schedule: a new
        generator every ``generator_life_epochs``), written to the memory bank as one shard of this
        process when ``store``. Returns ``synthesize``'s (images, labels, losses)."""
        with self.clock.phase("synthesis"):
            if batch_index == 0:
                self.synthesizer.start_epoch(epoch)
            images, labels, losses = self.synthesize(epoch, batch_index)
        if store:
            with self.clock.phase("io"):
                self.memory.write(images, labels, {"epoch": epoch, "batch": batch_index, "rank": self.rank})
        return images, labels, losses

    def distill_steps(self, n: int, progress: EpochProgress | None = None) -> dict:
        """``n`` student steps (fewer at the end of the epoch) from ``progress.distill_steps`` on
        (default: the start of epoch ``start_epoch``), each on ``distill.batch_size`` images from the
        union of all processes' shards; a safe point every ``run.safe_point_every_steps`` steps. The
        epoch is not ended (``distill`` does that). Returns {"kd_sum": the sum of the steps' KD losses
        (float32 device scalar), "steps": the number of steps run}; ``progress`` holds the position
        and the epoch's running sums.

        Raises:
            Preempted: a stop was requested at a safe point (the checkpoint is written).
        """
        d, every = self.cfg.distill, self.cfg.run.safe_point_every_steps
        progress = progress or EpochProgress.start(self.start_epoch, self.device)
        self.engine.train()
        steps = range(progress.distill_steps, min(progress.distill_steps + n, d.steps_per_epoch))
        # batch `step` is a function of (seed, rank, epoch, step): gathered ahead, the same on resume
        seeds = [batch_seed(self.cfg.run.seed, self.rank, progress.epoch, step) for step in steps]
        batches = self.memory.batches(d.batch_size, seeds, self.cfg.memory.prefetch)
        total = torch.zeros((), device=self.device)
        try:
            for step, (images, _) in zip(steps, batches):
                loss = self.engine.step(images, self.rng)
                progress.sums["kd_sum"] += loss
                total += loss
                if (step + 1) % self.cfg.run.log_every_steps == 0:  # one host read every log_every_steps steps
                    self.trackers.log(
                        {"train/kd_loss": loss.item()}, global_step(progress.epoch, step + 1, d.steps_per_epoch)
                    )
                progress.distill_steps = step + 1
                if (step + 1) % every == 0 and step + 1 < d.steps_per_epoch:
                    self.safe_point()
        finally:
            batches.close()  # stops the prefetching thread (also on a preemption)
        return {"kd_sum": total, "steps": len(steps)}

    def distill(self, progress: EpochProgress | None = None) -> dict[str, torch.Tensor]:
        """The rest of the epoch's student steps (``distill_steps`` up to ``distill.steps_per_epoch``),
        then the epoch's end (scheduler step). Returns {"kd": mean KD loss of the epoch, float32
        device scalar}."""
        d = self.cfg.distill
        progress = progress or EpochProgress.start(self.start_epoch, self.device)
        self.distill_steps(d.steps_per_epoch - progress.distill_steps, progress)
        self.engine.end_epoch(self.collectives.average)
        return {"kd": progress.sums["kd_sum"] / d.steps_per_epoch}

    def synthesis_phase(self, progress: EpochProgress, n_batches: int) -> None:
        """The epoch's synthesis batches from ``progress.synthesis_batches`` on, one shard each."""
        epoch, warmup = progress.epoch, progress.epoch < self.cfg.run.warmup_epochs
        for b in range(progress.synthesis_batches, n_batches):
            images, labels, losses = self.synthesize_batch(epoch, b)
            if b == n_batches - 1 and self.accelerator.is_main_process:
                with self.clock.phase("io"):
                    save_epoch_samples(self, images, labels, epoch)  # training/summary.py
            with self.clock.phase("evaluation"):
                progress.add_synthesis(losses, *self.probe_synthetic(images, labels, student=not warmup))
            if b + 1 < n_batches:
                self.safe_point()
        if n_batches:
            with self.clock.phase("io"):
                self.accelerator.wait_for_everyone()  # every process's shards of this epoch are listed
                self.memory.refresh()

    def run_epoch(self, epoch: int) -> dict:
        """Synthesis then, after warm-up, distillation and evaluation; continues ``self.progress``
        when a mid-epoch checkpoint was resumed. Returns the epoch's record (may hold tensors).

        Raises:
            Preempted: a stop was requested (SIGTERM / SIGUSR1) and the checkpoint is written.
        """
        run, s = self.cfg.run, self.cfg.synthesis
        warmup = epoch < run.warmup_epochs
        if self.progress is None or self.progress.epoch != epoch:
            self.progress = EpochProgress.start(epoch, self.device)
        p, n_batches = self.progress, s.warmup_batches_per_epoch if warmup else s.batches_per_epoch
        self.synthesis_phase(p, n_batches)
        record: dict = {"epoch": epoch, "warmup": warmup}
        if n_batches:
            record.update(p.synthesis_record(n_batches, diversity_measured=s.batch_size > self.num_classes))
        record["memory_size"] = len(self.memory)
        # damaged shards dropped / manifests rebuilt by any process since the last epoch
        events = self.collectives.concat_lists(self.memory.pop_events())
        if events:
            record["memory_events"] = events
        if not warmup:
            if n_batches:  # on the epoch's own synthesis batches, which the adversarial term made hard
                record["adversarial_agreement"] = self.collectives.fraction(p.sums["agree"], p.sums["agree_count"])
            with self.clock.phase("distillation"):
                record.update(self.distill(p))
            record["lr"] = self.engine.lr
            if epoch == run.epochs - 1 or (epoch - run.warmup_epochs + 1) % self.cfg.eval.every_epochs == 0:
                with self.clock.phase("evaluation"):
                    record["student_top1"] = self.evaluate(self.student)
        record.update(self.time_accounting())
        return record

    def time_accounting(self) -> dict:
        """``RunClock.accounting``: elapsed, per-phase seconds and device-hours of the run so far."""
        return self.clock.accounting(self.world_size, self.device_kind)

    # -- the run ------------------------------------------------------------------------------

    def safe_point(self) -> None:
        """Checkpoint the current position and raise Preempted if a stop was requested anywhere."""
        if self.guard.requested():
            with self.clock.phase("checkpoint"):
                path = self.save_checkpoint(self.progress.epoch, self.progress)
            raise Preempted(str(path))

    def fit(self) -> dict:
        """Run (or continue) all epochs; write checkpoints, metrics.jsonl, the exported student and
        summary.json. Returns the summary dict.

        SIGTERM or SIGUSR1 (to any process) stops the run at the next safe point: after a
        synthesis batch, every ``run.safe_point_every_steps`` student steps, or at the end of an
        epoch. Every process then writes its part of a checkpoint of that exact position and fit
        returns ``{"preempted": True, "checkpoint": path, "epoch": e}`` without a summary.json;
        running it again with ``run.resume=true`` continues from there.
        """
        acc, run, log = self.accelerator, self.cfg.run, self.logger
        summary_path = self.run_dir / "summary.json"
        if self.start_epoch >= run.epochs and summary_path.is_file():
            acc.print(f"{self.run_dir} is complete: returning its summary unchanged")
            return json.loads(summary_path.read_text())
        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        try:
            with self.guard:
                with self.clock.phase("evaluation"):
                    teacher_top1 = self.evaluate(self.teacher)
                acc.print(f"teacher top-1 on the real test split: {teacher_top1}")
                bar = epoch_bar(self.start_epoch, run.epochs, run.progress and acc.is_local_main_process)
                for epoch in bar:
                    record = self.run_epoch(epoch)
                    with self.clock.phase("io"):
                        record = log.log(record)  # in the history before the checkpoint that holds it
                    self.progress = None
                    with self.clock.phase("checkpoint"):
                        path = self.save_checkpoint(epoch)
                    bar.set_postfix(bar_postfix(record))
                    if epoch < run.epochs - 1 and self.guard.requested():
                        raise Preempted(str(path))
                return finish_run(self, teacher_top1)  # training/finish.py
        except Preempted as stop:
            acc.print(
                f"stop requested (signal {self.guard.signal}): checkpoint {stop} written; continue with run.resume=true"
            )
            return {
                "preempted": True,
                "checkpoint": str(stop),
                "epoch": log.history[-1]["epoch"] if log.history else None,
            }
        finally:
            self.close()

    def heldout_agreement(self) -> float:
        """The data-free quality proxy: top-1 agreement (fraction in [0, 1]) of the student with
        the teacher on one extra synthesis batch per process, made without the adversarial term
        (which picks images on which they disagree) and never stored in the memory bank; summed
        over processes."""
        images, labels, _ = self.synthesize(self.cfg.run.epochs, 0, adversarial=False)
        _, agree, count = self.probe_synthetic(images, labels, student=True)
        return self.collectives.fraction(agree, torch.tensor(count, device=self.device)).item()

    # -- checkpoints (training/run_state.py) ---------------------------------------------------

    def save_checkpoint(self, epoch: int, position: EpochProgress | None = None) -> Path:
        """Checkpoint the end of ``epoch`` or, with ``position``, a mid-epoch safe point
        (``RunState.save``: atomic, every process writes its part)."""
        return self.state.save(epoch, position)

    def _resume(self) -> list[str]:
        """Continue from the latest checkpoint (``RunState.resume``); returns the allowed config
        changes since it."""
        point = self.state.resume(self.device)
        self.start_epoch, self.progress = point.start_epoch, point.progress
        return point.changes
