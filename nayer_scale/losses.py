"""Teacher hooks and the losses of NAYER synthesis and distillation.

Synthesis loss (NAYER, Tran et al., CVPR 2024, Eq. 5, as in the published code):

    L_Z = a_ce * CE(T(x), y)  +  a_bn * sum_l w_l * r_l(x)  -  a_adv * mean_i [ m_i * KL(p_T(x_i) || p_S(x_i)) ]

with r_l the BN-statistics loss of teacher BatchNorm layer l (DeepInversion, Yin et al. CVPR 2020;
see ``nayer_kernels.bn_stats``), w_1 = ``first_bn_multiplier`` and w_l = 1 otherwise, and the
adversarial mask m_i = 1[argmax S(x_i) == argmax T(x_i)] (Fast-Datafree, Fang et al. AAAI 2022).
Student loss: KL(softmax(t/tau) || softmax(s/tau)) * tau^2 (Hinton et al. 2015), batch mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nayer_kernels import bn_partial_sums, bn_stats_loss, bn_stats_loss_from_sums, resolve_backend, update_ema

from .collectives import global_sum

__all__ = ["BN_STATS_SCOPES", "BNStatsHooks", "adversarial_loss", "image_prior_losses", "kd_loss"]

BN_STATS_SCOPES = ("process", "global")


class BNStatsHooks:
    """Forward hooks on every BatchNorm2d of the teacher that compute the BN-statistics loss.

    The hooks compute nothing unless inside ``with hooks.active():`` (synthesis), so evaluating
    the teacher for distillation or test accuracy costs nothing extra.

    Scope of the statistics (``synthesis.bn_stats_scope``):
      - "process" (published): each layer's loss is computed in its hook on this process's
        synthesis batch alone.
      - "global": each hook keeps the layer's partial statistics (S1, S2 of x - K with K the
        running mean, and the count M, float32, with their autograd graph); ``loss()`` concatenates
        all layers into ONE flat buffer of sum_l (2 C_l + 1) floats, sums it over processes with
        ONE all-reduce (``all_reduce``, identity backward), and finalizes every layer's loss on the
        statistics of the union of all processes' batches. Every process then holds the same loss,
        and dL/dx of its own rows equals that of the single-process loss on the concatenated batch.
        The EMA (``update_momentum``) blends these global statistics, so it is global too.
        Every process must run the same number of hooked forwards and ``loss()`` calls.

    Args:
        teacher: the frozen teacher; must contain at least one nn.BatchNorm2d.
        momentum: ``bn_mmt``; 0 disables the EMA blend.
        first_bn_multiplier: weight of the first BN layer's term (DeepInversion uses 10).
        backend: "reference" (PyTorch, the CPU path) or "triton" (fused kernel), as chosen once per
            run by ``nayer_kernels.select_backend``; "auto" is resolved here, once, so the hooks
            pass a resolved name on every BN-layer call.
        scope: "process" or "global" (see above).
        all_reduce: scope "global": differentiable sum over processes of a flat float32 tensor;
            default ``nayer_scale.collectives.global_sum`` (torch.distributed, a no-op without a
            process group).

    Raises:
        ValueError: if the teacher has no BatchNorm2d layer, an unknown backend or scope.
        ImportError: backend "auto" with NAYER_KERNELS=triton and triton not installed.
    """

    def __init__(self, teacher: nn.Module, momentum: float = 0.9, first_bn_multiplier: float = 1.0,
                 backend: str = "reference", scope: str = "process",
                 all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.layers = [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ValueError("the teacher has no BatchNorm2d layer: the BN-statistics loss needs one")
        if scope not in BN_STATS_SCOPES:
            raise ValueError(f"BN-statistics scope is {scope!r}; choose one of {BN_STATS_SCOPES}")
        self.scope = scope
        self.all_reduce = global_sum if all_reduce is None else all_reduce
        self._partials: list[tuple[float, torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self.momentum = float(momentum)
        self.first_bn_multiplier = float(first_bn_multiplier)
        self.backend = resolve_backend(backend)
        self.ema: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self._losses: list[torch.Tensor | None] = [None] * len(self.layers)
        self._stats: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self._enabled = False
        self._handles = [
            layer.register_forward_hook(self._make_hook(i)) for i, layer in enumerate(self.layers)
        ]

    def _make_hook(self, index: int):
        def hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not self._enabled:
                return
            if self.scope == "global":  # partial statistics only; loss() reduces and finalizes
                x = inputs[0]
                s1, s2 = bn_partial_sums(x, module.running_mean, backend=self.backend)
                self._partials[index] = (x.numel() / x.shape[1], s1, s2)
                return
            ema = self.ema[index]
            loss, mean, var = bn_stats_loss(
                inputs[0],
                module.running_mean,
                module.running_var,
                None if ema is None else ema[0],
                None if ema is None else ema[1],
                self.momentum,
                backend=self.backend,
            )
            self._losses[index] = loss
            self._stats[index] = (mean, var)

        return hook

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Enable the hooks for the teacher forwards inside the block."""
        self._enabled = True
        try:
            yield
        finally:
            self._enabled = False

    def loss(self) -> torch.Tensor:
        """sum_l w_l r_l of the last hooked teacher forward: float32 scalar.

        With scope "global" this is where the one all-reduce of the step happens (a collective:
        every process must call it).

        Raises:
            RuntimeError: if no teacher forward ran inside ``active()`` since the last call.
        """
        if self.scope == "global":
            self._finalize_global()
        if any(v is None for v in self._losses):
            raise RuntimeError("no hooked teacher forward: run the teacher inside hooks.active()")
        total = torch.stack(self._losses).sum() + (self.first_bn_multiplier - 1.0) * self._losses[0]
        self._losses = [None] * len(self.layers)
        return total

    def global_buffer_numel(self) -> int:
        """Floats in the one all-reduce per generator step of scope "global": sum_l (2 C_l + 1)
        (S1 and S2 per channel, one count per layer), 4 bytes each."""
        return sum(2 * layer.num_features + 1 for layer in self.layers)

    def _finalize_global(self) -> None:
        """One all-reduce of every layer's (S1, S2, M), then each layer's loss and statistics."""
        if any(p is None for p in self._partials):
            raise RuntimeError("no hooked teacher forward: run the teacher inside hooks.active()")
        partials, self._partials = self._partials, [None] * len(self.layers)
        device = partials[0][1].device
        counts = torch.tensor([p[0] for p in partials], dtype=torch.float32, device=device)
        flat = torch.cat([t for _, s1, s2 in partials for t in (s1.float(), s2.float())] + [counts])
        total = self.all_reduce(flat)
        offset, n_layers = 0, len(self.layers)
        for i, layer in enumerate(self.layers):
            c = layer.num_features
            s1, s2 = total[offset : offset + c], total[offset + c : offset + 2 * c]
            offset += 2 * c
            count = total[flat.numel() - n_layers + i]
            ema = self.ema[i]
            loss, mean, var = bn_stats_loss_from_sums(
                count, s1, s2, layer.running_mean, layer.running_mean, layer.running_var,
                None if ema is None else ema[0], None if ema is None else ema[1], self.momentum,
            )
            self._losses[i] = loss
            self._stats[i] = (mean, var)

    def update_momentum(self) -> None:
        """Fold the last batch's statistics into the EMA (once per synthesis batch)."""
        if self.momentum <= 0:
            return
        for i, stats in enumerate(self._stats):
            if stats is not None:
                self.ema[i] = update_ema(self.ema[i], stats, self.momentum)

    def state_dict(self) -> dict:
        return {"ema": [None if e is None else (e[0].cpu(), e[1].cpu()) for e in self.ema]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["ema"]) != len(self.layers):
            raise ValueError(
                f"checkpoint has BN momentum state for {len(state['ema'])} layers, teacher has {len(self.layers)}"
            )
        self.ema = [
            None if e is None else (e[0].to(layer.running_mean.device), e[1].to(layer.running_mean.device))
            for e, layer in zip(state["ema"], self.layers)
        ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def adversarial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Masked adversarial term: -mean_i( m_i * sum_c p_T,c log(p_T,c / p_S,c) ), temperature 1.

    m_i = 1 where student and teacher agree on the argmax; disagreeing rows count as zeros in the
    mean (published Fast-Datafree / NAYER code). Logits (N, K), any float dtype; float32 scalar.
    Minimising it *maximises* the teacher-student divergence on samples the student already gets
    right, pushing the generator towards samples the student has not learned yet.
    """
    s = student_logits.float()
    t = teacher_logits.float()
    mask = (s.argmax(1) == t.argmax(1)).float()
    kl = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="none", log_target=True).sum(1)
    return -(kl * mask).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t / tau) || softmax(s / tau)) * tau^2, batch mean (Hinton et al., 2015).

    Logits (N, K), any float dtype; returns a float32 scalar.
    """
    tau = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / tau, 1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, 1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * tau * tau


def image_prior_losses(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepInversion's image priors (Yin et al., CVPR 2020, Eq. 3; NVlabs ``get_image_prior_losses``).

    tv_l2 = ||x[..., :, :-1] - x[..., :, 1:]|| + ||x[..., :-1, :] - x[..., 1:, :]||
            + ||x[..., 1:, :-1] - x[..., :-1, 1:]|| + ||x[..., :-1, :-1] - x[..., 1:, 1:]||
    l2    = ||x||
    (plain Frobenius norms over the whole batch: horizontal, vertical and both diagonal
    neighbour differences.)

    Args:
        x: (N, C, H, W) images being optimised, any float dtype (NVlabs applies it to the
            normalised pixels).
    Returns:
        (tv_l2, l2): float32 scalars.
    """
    x = x.float()
    tv = (torch.linalg.vector_norm(x[..., :, :-1] - x[..., :, 1:])
          + torch.linalg.vector_norm(x[..., :-1, :] - x[..., 1:, :])
          + torch.linalg.vector_norm(x[..., 1:, :-1] - x[..., :-1, 1:])
          + torch.linalg.vector_norm(x[..., :-1, :-1] - x[..., 1:, 1:]))
    return tv, torch.linalg.vector_norm(x)
