"""Worker for tests/integration/test_bn_global_runs.py (its batches and teacher also serve
tests/unit/test_bn_global.py): one of 2 gloo processes computing the BN-statistics loss with
synthesis.bn_stats_scope=global on its half of a fixed batch.

argv: out_file backend world_size     env: RANK, MASTER_ADDR, MASTER_PORT (and TRITON_INTERPRET=1
for backend "triton" on CPU). Two generator steps (the second with the EMA of the first), each:
loss, dL/dx of this process's rows; then the EMA. Saved as safetensors in out_file.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

BATCH_PER_PROCESS = 3
MOMENTUM, FIRST_BN_MULTIPLIER = 0.9, 10.0


def tiny_teacher() -> nn.Module:
    """3 BatchNorm2d layers of 4, 5 and 6 channels on 3x8x8 input; random running statistics, some
    means far from 0 (the shifted sums must keep their precision)."""
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Conv2d(5, 6, 1),
        nn.BatchNorm2d(6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )
    for m in teacher.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_().mul_(3.0)
            m.running_var.uniform_(0.5, 2.0)
    return teacher.eval()


def batches(world_size: int) -> list[torch.Tensor]:
    """The union batch of each of the 2 steps: (world_size * BATCH_PER_PROCESS, 3, 8, 8) float32."""
    g = torch.Generator().manual_seed(1)
    return [torch.randn(world_size * BATCH_PER_PROCESS, 3, 8, 8, generator=g) * 2.0 + 5.0 for _ in range(2)]


def run_steps(hooks, teacher: nn.Module, xs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loss and dL/dx of each step (EMA updated after each), then the EMA of every layer."""
    out = {}
    for step, x in enumerate(xs):
        x = x.clone().requires_grad_()
        with hooks.active():
            teacher(x)
        loss = hooks.loss()
        loss.backward()
        hooks.update_momentum()
        out[f"loss{step}"], out[f"grad{step}"] = loss.detach().reshape(1), x.grad
    for i, (mean, var) in enumerate(hooks.ema):
        out[f"ema_mean{i}"], out[f"ema_var{i}"] = mean, var
    return out


if __name__ == "__main__":
    import torch.distributed as dist
    from safetensors.torch import save_file

    from nayer_scale.synthesis.bn_hooks import BNStatsHooks

    out_file, backend, world_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    teacher = tiny_teacher()
    hooks = BNStatsHooks(teacher, MOMENTUM, FIRST_BN_MULTIPLIER, backend, scope="global")
    rows = slice(rank * BATCH_PER_PROCESS, (rank + 1) * BATCH_PER_PROCESS)
    result = run_steps(hooks, teacher, [x[rows] for x in batches(world_size)])
    result["reduce_numel"] = torch.tensor([hooks.global_buffer_numel()])
    save_file({k: v.contiguous() for k, v in result.items()}, out_file)
    dist.destroy_process_group()
