"""The student engine: the student model, its optimiser, schedule, loss scaling and KD step, under
DDP or DeepSpeed ZeRO-2. Every DeepSpeed detail of the project lives in this file.

One student step (NAYER Alg. 1, student loop; the published code's KD):

    x ~ memory bank,  x' = aug(x),  L = KL(softmax(T(x') / tau) || softmax(S(x') / tau)) * tau^2

SGD with momentum and weight decay, a cosine schedule stepped once per post-warm-up epoch (the
published code), dynamic loss scaling in fp16 (DeepSpeed's engine scales its own loss).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator, DistributedType
from torch import nn

from ..augment import BatchAugment
from ..config import ConfigError
from ..losses import kd_loss
from ..precision import Precision

__all__ = ["StudentEngine"]


class StudentEngine:
    """Owns the student and everything that trains it.

    Args:
        student: the (unwrapped, freshly built) student on the training device.
        teacher: the frozen teacher (its KD forward is compiled with ``run.compile``).
        cfg: the run's NayerConfig (``distill``, ``run``, ``teacher`` sections are read).
        accelerator: prepares the student (DDP) or builds the DeepSpeed engine.
        precision: the run's precision.

    Attributes:
        strategy: "ddp" (also a single process) or "deepspeed" (ZeRO-2, under
            ``accelerate launch --use_deepspeed``).
        model: the prepared student (DDP wrapper / DeepSpeed engine); ``unwrapped`` is the module.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, cfg, accelerator: Accelerator, precision: Precision
    ) -> None:
        d, run = cfg.distill, cfg.run
        self.cfg, self.accelerator, self.precision = d, accelerator, precision
        self.strategy = "deepspeed" if accelerator.distributed_type == DistributedType.DEEPSPEED else "ddp"
        if precision.channels_last and self.strategy == "ddp":  # ZeRO flattens parameters: NCHW views only
            student.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(student.parameters(), lr=d.lr, momentum=d.momentum, weight_decay=d.weight_decay)
        # One scheduler step per post-warm-up epoch, stepped by hand (a prepared scheduler steps once per
        # process). Built on the plain SGD: ZeRO keeps using its param groups, so this lr is the one used.
        self.post_warmup_epochs = max(1, run.epochs - run.warmup_epochs)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.post_warmup_epochs, eta_min=d.lr_min
        )
        if self.strategy == "deepspeed":
            self._configure_deepspeed(d.batch_size)
        self.model, self.optimizer = accelerator.prepare(student, optimizer)
        compile_kwargs = {
            "backend": run.compile_backend,
            "mode": None if run.compile_mode == "default" else run.compile_mode,
        }
        if run.compile and self.strategy == "deepspeed":
            self.model.compile(backend=run.compile_backend, compile_kwargs={"mode": compile_kwargs["mode"]})
        elif run.compile:  # the prepared module (DDP wrapper included), as accelerate's dynamo_backend would
            self.model = torch.compile(self.model, **compile_kwargs)
        self.scaler = (
            precision.grad_scaler()
            if self.strategy == "ddp"
            else torch.amp.GradScaler(accelerator.device.type, enabled=False)
        )
        # The teacher's KD forward is compiled too; synthesis keeps it eager (BN hooks change per call).
        self.teacher_kd = torch.compile(teacher, **compile_kwargs) if run.compile else teacher
        t = cfg.teacher
        self.augment = BatchAugment(
            t.mean, t.std, d.crop_padding, d.flip, resized_crop=d.resized_crop_scale or None
        ).to(accelerator.device)

    def _configure_deepspeed(self, batch_size: int) -> None:
        ds_config = self.accelerator.state.deepspeed_plugin.deepspeed_config
        # "auto" cannot be inferred: there is no DataLoader (the memory bank samples).
        ds_config["train_micro_batch_size_per_gpu"] = batch_size
        ds_config.setdefault("gradient_accumulation_steps", 1)
        # accelerate fills a missing / "auto" gradient_clipping with 1.0: NAYER does not clip.
        ds_config["gradient_clipping"] = 0.0

    @property
    def name(self) -> str:
        """ "DDP" or "DeepSpeed ZeRO-2" (for logs)."""
        return "DeepSpeed ZeRO-2" if self.strategy == "deepspeed" else "DDP"

    @property
    def process_part(self) -> "_ProcessPart":
        """The Stateful view of this process's own state (``process_state_dict``)."""
        return _ProcessPart(self)

    @property
    def unwrapped(self) -> nn.Module:
        """The student module itself (no DDP / DeepSpeed wrapper)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def train(self) -> None:
        self.model.train()

    def step(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """One KD step on memory-bank images (B, C, H, W) float in [0, 1]; returns the detached
        float32 loss on the device (no host read)."""
        inputs = self.augment(images, rng)
        if self.precision.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            with torch.no_grad():
                teacher_logits = self.teacher_kd(inputs)
            loss = kd_loss(self.model(inputs), teacher_logits, self.cfg.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(self.scaler.scale(loss))
        self.scaler.step(self.optimizer)  # fp16: skipped when a gradient is inf/nan
        self.scaler.update()
        return loss.detach()

    def end_epoch(self, average) -> None:
        """After an epoch's steps: DDP broadcasts BN buffers every step, DeepSpeed never does, so
        average them over processes there (``average``: in-place mean over processes of a list of
        tensors); then one scheduler step."""
        if self.strategy == "deepspeed":
            average([b for b in self.unwrapped.buffers() if b.is_floating_point()])
        self.scheduler.step()

    def extend_schedule(self, post_warmup_epochs: int) -> None:
        """A resumed run with more ``run.epochs``: the cosine schedule spans the new length."""
        self.post_warmup_epochs = self.scheduler.T_max = max(1, post_warmup_epochs)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    # -- state ---------------------------------------------------------------------------------
    # Identical on every process (written once): weights, schedule, scaler and, under DDP, the
    # optimizer. ZeRO-2 partitions the optimizer state: each process keeps its own partition.

    def state_dict(self) -> dict:
        """The state every process shares (process 0 writes it)."""
        return {
            "student": self.unwrapped.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "optimizer": self.optimizer.optimizer.state_dict() if self.strategy == "ddp" else None,
            "strategy": self.strategy,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the shared state (before ``load_process_state_dict``).

        Raises:
            ConfigError: the checkpoint was written under the other strategy.
        """
        if state["strategy"] != self.strategy:
            raise ConfigError(
                f"the checkpoint was written by a {state['strategy']} run and this run is "
                f"{self.strategy}: DeepSpeed checkpoints resume only under DeepSpeed "
                "(accelerate launch --use_deepspeed), DDP checkpoints only without it"
            )
        self.unwrapped.load_state_dict(state["student"])
        if self.strategy == "ddp":
            self.optimizer.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty for a disabled scaler (fp32 / bf16)
            self.scaler.load_state_dict(state["scaler"])

    def process_state_dict(self) -> dict:
        """This process's own part: the ZeRO-2 optimizer partition (nothing under DDP)."""
        if self.strategy == "ddp":
            return {}
        return _zero_state_to_plain(self.optimizer.optimizer.state_dict())

    def load_process_state_dict(self, state: dict) -> None:
        if self.strategy == "ddp":
            return
        zero = self.optimizer.optimizer
        _restore_loss_scaler(zero, state.pop("loss_scaler", {}))
        states = [None] * self.accelerator.num_processes  # ZeRO reads entry [rank] of a per-process list
        states[self.accelerator.process_index] = state
        zero.load_state_dict(states)


class _ProcessPart:
    """Stateful adapter: a checkpoint stores it once per process."""

    def __init__(self, engine: StudentEngine) -> None:
        self.state_dict, self.load_state_dict = engine.process_state_dict, engine.load_process_state_dict


def _zero_state_to_plain(state: dict) -> dict:
    """A ZeRO optimizer state_dict with only tensors, numbers and strings (no pickled objects):
    the loss scaler object becomes its numbers, the parameter-slice mappings (used only by
    DeepSpeed's universal checkpoints) are dropped, enums become their values."""
    plain = {k: v for k, v in state.items() if k not in ("loss_scaler", "param_slice_mappings")}
    scaler = state.get("loss_scaler")
    plain["loss_scaler"] = (
        {k: v for k, v in vars(scaler).items() if isinstance(v, (bool, int, float))} if scaler is not None else {}
    )
    return plain


def _restore_loss_scaler(zero, numbers: dict) -> None:
    for k, v in numbers.items():
        setattr(zero.loss_scaler, k, v)
