"""Synthesis methods: NAYER and the two baselines of its Table 2, on one shared loss.

Each method turns a batch of pseudo labels into a batch of synthetic images in [0, 1] by
optimising

    L = a_ce * CE(T(aug(x)), y) + a_bn * L_BN(T(aug(x))) + a_adv * L_adv(S(aug(x)), T(aug(x)))

(``SynthesisContext.loss``; the terms are defined in ``nayer_scale.losses``) and keeps the batch
with the lowest loss seen. They differ only in what is optimised:

- ``NayerSynthesizer`` (Tran et al., CVPR 2024, Alg. 1): a generator G and a noisy layer Z fed
  with the label-text embeddings; Z's linears are re-initialised for every batch, G lives for
  ``generator_life_epochs`` epochs.
- ``DeepInversionSynthesizer`` (Yin et al., CVPR 2020): the pixels themselves, from N(0, 1) noise in
  the teacher's normalised space, for many steps, plus the total-variation and l2 image priors;
  pixels are clipped to the valid range after every step (NVlabs ``clip``).
- ``FastSynthesizer`` (Fang et al., AAAI 2022): a copy of a meta-learned generator fed with random
  z, for a few steps; after each batch the meta generator moves towards the adapted copy
  (first-order MAML, the published default, or Reptile).

All three take the same pseudo labels (class-ordered, see ``NayerTrainer.synthesis_labels``; the
DataFree toolbox draws the baselines' labels at random), the same augmentation and the same
masked adversarial term (the toolbox's DeepInversion uses an unmasked one).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nayer_kernels import noisy_seed

from ..augment import BatchAugment
from ..config import SynthesisConfig
from ..losses import adversarial_loss, image_prior_losses
from ..precision import Precision
from .bn_hooks import BNStatsHooks
from .generators import Generator
from .noisy_layer import NoisyLayer

__all__ = [
    "DeepInversionSynthesizer",
    "FastSynthesizer",
    "NayerSynthesizer",
    "SynthesisContext",
    "Synthesizer",
    "build_synthesizer",
]

# Reptile's meta-gradient scale in the published Fast code: grad = 67 * (theta - theta_adapted).
REPTILE_SCALE = 67.0


@dataclass
class SynthesisContext:
    """What every synthesis method shares with the trainer.

    Attributes:
        teacher: frozen teacher in eval mode, with ``hooks`` attached.
        hooks: BN-statistics hooks of the teacher.
        augment: differentiable synthesis augmentation ([0, 1] images in, normalised images out).
        config: the run's synthesis section.
        precision: the run's resolved precision: autocast dtype, loss scaling (fp16) and whether
            generators are built in channels_last memory format.
        rng: the process's torch.Generator on ``device`` (checkpointed with the run).
        device: where everything lives.
        image_shape: (C, H, W) of the teacher's input.
        run_seed, rank: seed the per-batch noisy-layer re-initialisation.
        all_reduce: None, or a collective that replaces each tensor of a list by its mean over all
            processes (``synthesis.nayer.shared_generator``: one generator shared by all processes).
    """

    teacher: nn.Module
    hooks: BNStatsHooks
    augment: BatchAugment
    config: SynthesisConfig
    precision: Precision
    rng: torch.Generator
    device: torch.device
    image_shape: tuple[int, int, int]
    run_seed: int = 0
    rank: int = 0
    all_reduce: Callable[[list[torch.Tensor]], None] | None = None

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, student: nn.Module | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The shared synthesis loss on one augmented view of ``images``.

        Args:
            images: (B, C, H, W) in [0, 1], differentiable.
            labels: (B,) int64 pseudo labels.
            student: the student in eval mode, or None to leave out the adversarial term.
        Returns:
            loss: float32 scalar a_ce*CE + a_bn*L_BN + a_adv*L_adv; parts: the detached terms.
        """
        s = self.config
        augmented = self.augment(images, self.rng)
        with self.hooks.active():
            teacher_logits = self.teacher(augmented)
        loss_bn = self.hooks.loss()
        loss_ce = F.cross_entropy(teacher_logits.float(), labels)
        loss_adv = (
            adversarial_loss(student(augmented), teacher_logits)
            if student is not None
            else torch.zeros((), device=self.device)
        )
        loss = s.bn_loss_weight * loss_bn + s.ce_loss_weight * loss_ce + s.adv_loss_weight * loss_adv
        return loss, {"bn": loss_bn.detach(), "ce": loss_ce.detach(), "adv": loss_adv.detach()}

    def new_generator(self, noise_dim: int, shared_seed: int | None = None) -> Generator:
        """A freshly initialised generator (B, noise_dim) -> (B, C, H, W) for this teacher; its
        initial weights come from ``shared_seed`` (identical on every process, the global RNG left
        untouched) when given, else from the process's global RNG."""
        c, h, _ = self.image_shape
        if shared_seed is None:
            gen = Generator(noise_dim, h, c, self.config.generator_width)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(shared_seed)
                gen = Generator(noise_dim, h, c, self.config.generator_width)
        gen = gen.to(self.device)
        return gen.to(memory_format=torch.channels_last) if self.precision.channels_last else gen


class _BestBatch:
    """Keeps the lowest-loss batch seen, without a host sync per step."""

    def __init__(self, device: torch.device):
        self.loss = torch.full((), math.inf, device=device)
        self.images: torch.Tensor | None = None

    def update(self, loss: torch.Tensor, images: torch.Tensor) -> None:
        better = loss.detach() < self.loss
        self.loss = torch.where(better, loss.detach(), self.loss)
        images = images.detach().float()
        self.images = images if self.images is None else torch.where(better, images, self.images)


class Synthesizer:
    """Interface of a synthesis method (see the module docstring).

    ``synthesize(labels, epoch, batch_index, student)`` returns ``(images, losses)``: images
    (B, C, H, W) float32 in [0, 1], the lowest-loss batch (un-augmented); losses, detached float32
    scalars of the last step (loss, bn, ce, adv). ``state_dict`` / ``load_state_dict`` hold what a
    checkpoint must restore for an exact resume.

    ``scaler`` is the method's loss scaler (``torch.amp.GradScaler``, enabled for fp16 only). It
    lives as long as the synthesizer, across the per-batch optimizers, so that the scale found on
    one batch carries over to the next instead of starting high (and skipping steps) every batch.
    """

    def __init__(self, ctx: SynthesisContext) -> None:
        self.ctx = ctx
        self.scaler = ctx.precision.grad_scaler()

    def backward(self, loss: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Gradients of the (scaled) loss for the synthesis parameters only, stored in ``.grad``:
        teacher and student weights are not differentiated. Returns the gradient tensors."""
        grads = torch.autograd.grad(self.scaler.scale(loss), params)
        for p, g in zip(params, grads):
            p.grad = g
        return grads

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step through the scaler (fp16: unscaled first, skipped on inf/nan gradients)."""
        self.scaler.step(optimizer)
        self.scaler.update()

    def start_epoch(self, epoch: int) -> None:
        """Called before the first batch of every epoch."""

    def synthesize(
        self, labels: torch.Tensor, epoch: int, batch_index: int, student: nn.Module | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):  # empty for a disabled scaler (fp32 / bf16)
            self.scaler.load_state_dict(state["scaler"])


class NayerSynthesizer(Synthesizer):
    """NAYER: x = G(Z(e_y)) with the noisy layer Z re-initialised per batch (Tran et al., CVPR 2024),
    and the ablations of the paper's Table 4 on the same code path.

    The generator input v is chosen by ``synthesis.nayer.generator_input``:
        "lte": e_y, the label-text embedding (NAYER);  "onehot": the one-hot label (K-d);
        "noise": z ~ N(0, I) (noise_dim-d);  "lte_cat_noise": [e_y, z] (2D-d);
        "lte_plus_noise": e_y + beta * z (D-d);
    with z drawn from ``ctx.rng`` once per batch and fixed during it. ``synthesis.nayer.noisy_layer`` then
    maps v to the generator's noise_dim input: "k_to_1" (one linear per copy of the K classes,
    NAYER), "one_to_one" (one linear per sample) or "none" (v goes straight into a generator whose
    first layer takes v's width). The noisy linears are re-drawn before every batch unless
    ``noisy_layer_reinit`` is false; ``noisy_layer_batchnorm`` false drops their BatchNorm1d.

    Args:
        ctx: the shared context.
        lte: (K, D) float32 label-text embeddings on ``ctx.device``, or None for inputs without LTE.
        num_classes: K.
        backend: kernel backend for the noisy-layer re-initialisation.

    The re-initialisation is seeded by (run seed, epoch, batch index, rank), so it is the same on
    every run and resume and different on every process. A new Adam over G + Z for every batch.
    With ``ctx.all_reduce`` (``synthesis.nayer.shared_generator``) G is one generator shared by all
    processes: every process builds it from the same seed (run seed, epoch) and its gradients are
    averaged over processes at every step, so it stays identical everywhere; the noisy layers and
    their re-initialisation stay per process.

    Raises:
        ValueError: an LTE input without ``lte``.
    """

    def __init__(
        self, ctx: SynthesisContext, lte: torch.Tensor | None, num_classes: int, backend: str = "reference"
    ) -> None:
        super().__init__(ctx)
        s, n = ctx.config, ctx.config.nayer
        if lte is None and n.generator_input.startswith("lte"):
            raise ValueError(f"synthesis.nayer.generator_input={n.generator_input} needs the label-text embeddings")
        self.lte, self.num_classes = lte, num_classes
        text_dim = lte.shape[1] if lte is not None else 0
        self.z_dim = {"noise": s.noise_dim, "lte_cat_noise": text_dim, "lte_plus_noise": text_dim}.get(
            n.generator_input, 0
        )
        in_dim = {
            "lte": text_dim,
            "onehot": num_classes,
            "noise": s.noise_dim,
            "lte_cat_noise": 2 * text_dim,
            "lte_plus_noise": text_dim,
        }[n.generator_input]
        self.noisy = None
        if n.noisy_layer != "none":
            rows_per_linear = num_classes if n.noisy_layer == "k_to_1" else 1
            self.noisy = NoisyLayer(
                in_dim, s.noise_dim, rows_per_linear, s.batch_size, n.noisy_layer_init, n.noisy_layer_batchnorm, backend
            ).to(ctx.device)
        self.generator_in = s.noise_dim if self.noisy is not None else in_dim
        self.generator = ctx.new_generator(self.generator_in, self._shared_seed(0))

    def _shared_seed(self, epoch: int) -> int | None:
        # A shared generator starts from the same weights everywhere; its gradients are averaged.
        return self.ctx.run_seed * 7919 + epoch if self.ctx.all_reduce is not None else None

    def start_epoch(self, epoch: int) -> None:
        if epoch % self.ctx.config.generator_life_epochs == 0 and epoch > 0:
            self.generator = self.ctx.new_generator(self.generator_in, self._shared_seed(epoch))

    def generator_inputs(self, labels: torch.Tensor) -> torch.Tensor:
        """v for a batch of labels (B,): (B, in_dim) float32 (see the class docstring)."""
        ctx, mode = self.ctx, self.ctx.config.nayer.generator_input
        z = torch.randn(labels.shape[0], self.z_dim, device=ctx.device, generator=ctx.rng) if self.z_dim else None
        if mode == "lte":
            return self.lte[labels]
        if mode == "onehot":
            return F.one_hot(labels, self.num_classes).float()
        if mode == "noise":
            return z
        if mode == "lte_cat_noise":
            return torch.cat([self.lte[labels], z], 1)
        return self.lte[labels] + ctx.config.nayer.noise_beta * z

    def synthesize(self, labels, epoch, batch_index, student):
        ctx, s = self.ctx, self.ctx.config
        inputs = self.generator_inputs(labels)
        params = list(self.generator.parameters())
        if self.noisy is not None:
            if s.nayer.noisy_layer_reinit:
                self.noisy.reinitialize(seed=noisy_seed(ctx.run_seed, epoch, batch_index, ctx.rank))
            params += list(self.noisy.parameters())
        optimizer = torch.optim.Adam(params, lr=s.generator_lr, betas=tuple(s.generator_betas))
        best = _BestBatch(ctx.device)
        for _ in range(s.num_generator_steps):
            with ctx.precision.autocast():
                images = self.generator(self.noisy(inputs) if self.noisy is not None else inputs)
                loss, parts = ctx.loss(images, labels, student)
            best.update(loss, images)
            self.backward(loss, params)
            if ctx.all_reduce is not None:
                # Shared generator: average its (scaled) gradients over processes. The fp16 scales
                # stay equal everywhere: the inf check below sees the same averaged gradients.
                ctx.all_reduce([p.grad for p in self.generator.parameters()])
            self.step(optimizer)
        return best.images.contiguous(), {"loss": loss.detach(), **parts}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "generator": self.generator.state_dict(),
            "noisy_layer": self.noisy.state_dict() if self.noisy is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.load_state_dict(state["generator"])
        if self.noisy is not None:
            self.noisy.load_state_dict(state["noisy_layer"])


class DeepInversionSynthesizer(Synthesizer):
    """DeepInversion (Yin et al., CVPR 2020): optimise the pixels of each batch directly.

    Pixels p start as N(0, 1) in the teacher's normalised space (drawn from ``ctx.rng``); the
    image is x = p * std + mean. Adam (``deepinversion.pixel_lr``, ``deepinversion.pixel_betas``)
    minimises the shared loss + ``deepinversion.tv_loss_weight`` * tv_l2(p) +
    ``deepinversion.l2_loss_weight`` * ||p|| for ``num_generator_steps``
    steps; after each step p is clipped so that x stays in [0, 1]. Nothing persists across batches
    except the BN-statistics momentum of the hooks (0 in the DeepInversion presets).
    """

    def __init__(self, ctx: SynthesisContext, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__(ctx)
        self.mean = torch.tensor(mean, device=ctx.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=ctx.device).view(1, -1, 1, 1)

    def synthesize(self, labels, epoch, batch_index, student):
        ctx, s = self.ctx, self.ctx.config
        shape = (labels.shape[0], *ctx.image_shape)
        pixels = torch.randn(shape, device=ctx.device, generator=ctx.rng).requires_grad_()
        low, high = -self.mean / self.std, (1 - self.mean) / self.std
        di = s.deepinversion
        optimizer = torch.optim.Adam([pixels], lr=di.pixel_lr, betas=tuple(di.pixel_betas))
        best = _BestBatch(ctx.device)
        for _ in range(s.num_generator_steps):
            with ctx.precision.autocast():
                images = pixels * self.std + self.mean
                loss, parts = ctx.loss(images, labels, student)
            tv, l2 = image_prior_losses(pixels)
            loss = loss + di.tv_loss_weight * tv + di.l2_loss_weight * l2
            best.update(loss, images)
            self.backward(loss, [pixels])
            self.step(optimizer)
            with torch.no_grad():
                pixels.copy_(torch.maximum(torch.minimum(pixels, high), low))
        # The first step's images are unclipped noise: clip whatever batch was kept.
        return best.images.clamp(0, 1).contiguous(), {"loss": loss.detach(), **parts}


class FastSynthesizer(Synthesizer):
    """Fast / FM (Fang et al., AAAI 2022): few steps per batch from a meta-learned generator.

    Per batch: copy the meta generator G into G', draw z ~ N(0, I) of shape (B, noise_dim), and
    run ``num_generator_steps`` Adam steps (lr ``generator_lr`` for G', ``fast.latent_lr`` for z) on the
    shared loss of x = G'(z). Then one step of the meta optimizer (Adam, lr = generator_lr *
    num_generator_steps, as published) on G with the meta-gradient
      - fomaml: the sum of G''s gradients over the inner steps (published default, is_maml=1);
      - reptile: 67 * (G - G') (the published Reptile scale).
    """

    def __init__(self, ctx: SynthesisContext) -> None:
        super().__init__(ctx)
        s = ctx.config
        self.generator = ctx.new_generator(s.noise_dim)
        self.meta_optimizer = torch.optim.Adam(
            self.generator.parameters(), lr=s.generator_lr * s.num_generator_steps, betas=tuple(s.generator_betas)
        )

    def synthesize(self, labels, epoch, batch_index, student):
        ctx, s = self.ctx, self.ctx.config
        fast = copy.deepcopy(self.generator)
        fast_params = list(fast.parameters())
        z = torch.randn(labels.shape[0], s.noise_dim, device=ctx.device, generator=ctx.rng).requires_grad_()
        optimizer = torch.optim.Adam(
            [{"params": fast_params}, {"params": [z], "lr": s.fast.latent_lr}],
            lr=s.generator_lr,
            betas=tuple(s.generator_betas),
        )
        meta_grads = [torch.zeros_like(p) for p in fast_params]
        best = _BestBatch(ctx.device)
        for _ in range(s.num_generator_steps):
            with ctx.precision.autocast():
                images = fast(z)
                loss, parts = ctx.loss(images, labels, student)
            best.update(loss, images)
            grads = self.backward(loss, fast_params + [z])
            if s.fast.meta_learning == "fomaml":
                self.scaler.unscale_(optimizer)  # in place: ``grads`` are the true gradients now
                if self.scaler.is_enabled():  # a step the scaler skips adds nothing (no host sync)
                    finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
                    grads = [torch.where(finite, g, torch.zeros_like(g)) for g in grads]
                for acc, g in zip(meta_grads, grads):
                    acc.add_(g)
            self.step(optimizer)
        with torch.no_grad():
            for p, adapted, acc in zip(self.generator.parameters(), fast_params, meta_grads):
                p.grad = acc if s.fast.meta_learning == "fomaml" else REPTILE_SCALE * (p - adapted)
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)
        return best.images.contiguous(), {"loss": loss.detach(), **parts}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "generator": self.generator.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.load_state_dict(state["generator"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])


def build_synthesizer(
    ctx: SynthesisContext,
    lte: torch.Tensor | None,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    backend: str = "reference",
) -> Synthesizer:
    """The synthesizer named by ``ctx.config.method``.

    Raises:
        ValueError: unknown method, or an LTE generator input without label-text embeddings.
    """
    method = ctx.config.method
    if method == "nayer":
        return NayerSynthesizer(ctx, lte, num_classes, backend)
    if method == "deepinversion":
        return DeepInversionSynthesizer(ctx, mean, std)
    if method == "fast":
        return FastSynthesizer(ctx)
    raise ValueError(f"unknown synthesis method {method!r}")
