"""The losses of NAYER synthesis and distillation: pure functions of their inputs.

Synthesis loss (NAYER, Tran et al., CVPR 2024, Eq. 5, as in the published code):

    L_Z = a_ce * CE(T(x), y)  +  a_bn * sum_l w_l * r_l(x)  -  a_adv * mean_i [ m_i * KL(p_T(x_i) || p_S(x_i)) ]

with r_l the BN-statistics loss of teacher BatchNorm layer l (DeepInversion, Yin et al. CVPR 2020;
see ``nayer_kernels.bn_stats``), w_1 = ``first_bn_multiplier`` and w_l = 1 otherwise, and the
adversarial mask m_i = 1[argmax S(x_i) == argmax T(x_i)] (Fast-Datafree, Fang et al. AAAI 2022).
The BN term needs the teacher's per-layer inputs and an EMA across batches: it is the stateful
component ``nayer_scale.synthesis.bn_hooks.BNStatsHooks``, not a function here.
Student loss: KL(softmax(t/tau) || softmax(s/tau)) * tau^2 (Hinton et al. 2015), batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["adversarial_loss", "image_prior_losses", "kd_loss"]


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
    tv = (
        torch.linalg.vector_norm(x[..., :, :-1] - x[..., :, 1:])
        + torch.linalg.vector_norm(x[..., :-1, :] - x[..., 1:, :])
        + torch.linalg.vector_norm(x[..., 1:, :-1] - x[..., :-1, 1:])
        + torch.linalg.vector_norm(x[..., :-1, :-1] - x[..., 1:, 1:])
    )
    return tv, torch.linalg.vector_norm(x)
