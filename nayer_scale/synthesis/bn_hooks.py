"""The teacher's BN-statistics hooks: the stateful, checkpointed half of the BN-statistics loss.

``BNStatsHooks`` puts a forward hook on every BatchNorm2d of the teacher. Inside ``with
hooks.active():`` each hook records its layer's statistics, and ``hooks.loss()`` returns

    L_BN = sum_l w_l r_l(x),   w_1 = first_bn_multiplier, w_l = 1 otherwise,

with r_l the BN-statistics loss of layer l (DeepInversion, Yin et al. CVPR 2020, Eq. 4; NAYER, Tran
et al. CVPR 2024, Eq. 3; computed by ``nayer_kernels``), the a_bn term of the synthesis loss
(``nayer_scale.losses`` holds the other, pure, terms).

Per hooked layer there is ONE record (``BNLayerState``: the module, its EMA, its last loss and
statistics, its partial sums, its hook handle). Where the statistics come from is a scope strategy
picked once at construction (``ProcessScope`` / ``GlobalScope``, behind ``BNStatsScope``;
``synthesis.bn_stats_scope``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from nayer_kernels import bn_partial_sums, bn_stats_loss, bn_stats_loss_from_sums, resolve_backend, update_ema

from ..collectives import global_sum

__all__ = ["BN_STATS_SCOPES", "BNLayerState", "BNStatsHooks", "BNStatsScope", "GlobalScope", "ProcessScope"]

_NO_FORWARD = "no hooked teacher forward: run the teacher inside hooks.active()"


@dataclass
class BNLayerState:
    """Everything the hooks keep about one hooked BatchNorm2d.

    Attributes:
        module: the teacher's layer (its running_mean / running_var buffers, (C,) float32).
        ema: EMA (mean, var) of earlier synthesis batches' statistics, each (C,) float32, or None
            before the first ``update_momentum``; the checkpointed state.
        loss: r_l of the last hooked forward (float32 scalar, differentiable), None once consumed.
        stats: (mean, var) of the last hooked forward, (C,) float32 detached (EMA input).
        partial: scope "global": (M, S1, S2) of the last hooked forward (M elements per channel,
            S1 / S2 (C,) float32 with their graph), None once reduced.
        handle: the forward hook's handle.
    """

    module: nn.BatchNorm2d
    ema: tuple[torch.Tensor, torch.Tensor] | None = None
    loss: torch.Tensor | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None
    partial: tuple[float, torch.Tensor, torch.Tensor] | None = None
    handle: RemovableHandle | None = None

    def ema_pair(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(ema_mean, ema_var), or (None, None) before the first EMA update."""
        return (None, None) if self.ema is None else self.ema


class BNStatsScope(Protocol):
    """Where each layer's statistics come from: ``record`` runs in the layer's forward hook,
    ``finalize`` once per ``BNStatsHooks.loss()`` before the layers' losses are summed."""

    name: str

    def record(self, layer: BNLayerState, x: torch.Tensor, momentum: float, backend: str) -> None:
        """Store what the layer's input x (N, C, H, W) contributes (sets ``loss``/``stats`` or ``partial``)."""

    def finalize(self, layers: list[BNLayerState], momentum: float) -> None:
        """Turn what ``record`` stored into every layer's ``loss`` and ``stats``."""


class ProcessScope:
    """Scope "process" (published): each layer's loss computed in its hook on this process's
    synthesis batch alone (``nayer_kernels.bn_stats_loss``, the EMA blend included)."""

    name = "process"

    def record(self, layer: BNLayerState, x: torch.Tensor, momentum: float, backend: str) -> None:
        """r_l and the batch statistics of x, straight away."""
        module = layer.module
        ema_mean, ema_var = layer.ema_pair()
        loss, mean, var = bn_stats_loss(
            x, module.running_mean, module.running_var, ema_mean, ema_var, momentum, backend=backend
        )
        layer.loss, layer.stats = loss, (mean, var)

    def finalize(self, layers: list[BNLayerState], momentum: float) -> None:
        """Nothing left to do: the hooks computed every loss."""


class GlobalScope:
    """Scope "global": the statistics of the union of all processes' synthesis batches.

    Each hook keeps the layer's partial statistics (S1, S2 of x - K with K the running mean, and the
    count M, float32, with their autograd graph); ``finalize`` concatenates all layers into ONE flat
    buffer of sum_l (2 C_l + 1) floats, sums it over processes with ONE all-reduce (``all_reduce``,
    identity backward), and computes every layer's loss on the summed statistics
    (``nayer_kernels.bn_stats_loss_from_sums``). Every process then holds the same loss, and dL/dx of
    its own rows equals that of the single-process loss on the concatenated batch. The EMA blends
    these global statistics, so it is global too. Every process must run the same number of hooked
    forwards and ``loss()`` calls.

    Args:
        all_reduce: differentiable sum over processes of a flat float32 tensor.
    """

    name = "global"

    def __init__(self, all_reduce: Callable[[torch.Tensor], torch.Tensor]):
        self.all_reduce = all_reduce

    def record(self, layer: BNLayerState, x: torch.Tensor, momentum: float, backend: str) -> None:
        """Partial statistics only; ``finalize`` reduces them."""
        s1, s2 = bn_partial_sums(x, layer.module.running_mean, backend=backend)
        layer.partial = (x.numel() / x.shape[1], s1, s2)

    def finalize(self, layers: list[BNLayerState], momentum: float) -> None:
        """One all-reduce of every layer's (S1, S2, M), then each layer's loss and statistics.

        Raises:
            RuntimeError: if some layer has no partial statistics (no hooked forward since the last call).
        """
        if any(layer.partial is None for layer in layers):
            raise RuntimeError(_NO_FORWARD)
        partials = [layer.partial for layer in layers]
        for layer in layers:
            layer.partial = None
        device = partials[0][1].device
        counts = torch.tensor([p[0] for p in partials], dtype=torch.float32, device=device)
        flat = torch.cat([t for _, s1, s2 in partials for t in (s1.float(), s2.float())] + [counts])
        total = self.all_reduce(flat)
        offset, n_layers = 0, len(layers)
        for i, layer in enumerate(layers):
            module, c = layer.module, layer.module.num_features
            s1, s2 = total[offset : offset + c], total[offset + c : offset + 2 * c]
            offset += 2 * c
            count = total[flat.numel() - n_layers + i]
            loss, mean, var = bn_stats_loss_from_sums(
                count,
                s1,
                s2,
                module.running_mean,
                module.running_mean,
                module.running_var,
                *layer.ema_pair(),
                momentum,
            )
            layer.loss, layer.stats = loss, (mean, var)


BN_STATS_SCOPES = (ProcessScope.name, GlobalScope.name)


def _make_scope(scope: str, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> BNStatsScope:
    """The strategy of a ``synthesis.bn_stats_scope`` value (ValueError for an unknown one)."""
    if scope == ProcessScope.name:
        return ProcessScope()
    if scope == GlobalScope.name:
        return GlobalScope(global_sum if all_reduce is None else all_reduce)
    raise ValueError(f"BN-statistics scope is {scope!r}; choose one of {BN_STATS_SCOPES}")


class BNStatsHooks:
    """Forward hooks on every BatchNorm2d of the teacher that compute the BN-statistics loss.

    The hooks compute nothing unless inside ``with hooks.active():`` (synthesis), so evaluating
    the teacher for distillation or test accuracy costs nothing extra.

    Scope of the statistics (``synthesis.bn_stats_scope``), picked once:
      - "process" (published, ``ProcessScope``): each layer's loss is computed in its hook on this
        process's synthesis batch alone.
      - "global" (``GlobalScope``): the hooks keep partial statistics, and ``loss()`` sums them over
        processes with ONE all-reduce per call and finalizes every layer's loss on the statistics of
        the union of all processes' batches (the EMA is then global too).

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

    def __init__(
        self,
        teacher: nn.Module,
        momentum: float = 0.9,
        first_bn_multiplier: float = 1.0,
        backend: str = "reference",
        scope: str = "process",
        all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self._layers = [BNLayerState(m) for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self._layers:
            raise ValueError("the teacher has no BatchNorm2d layer: the BN-statistics loss needs one")
        self._scope = _make_scope(scope, all_reduce)
        self.scope = scope
        self.momentum = float(momentum)
        self.first_bn_multiplier = float(first_bn_multiplier)
        self.backend = resolve_backend(backend)
        self._enabled = False
        for layer in self._layers:
            layer.handle = layer.module.register_forward_hook(self._make_hook(layer))

    @property
    def layers(self) -> list[nn.BatchNorm2d]:
        """The hooked BatchNorm2d layers, in ``teacher.modules()`` order."""
        return [layer.module for layer in self._layers]

    @property
    def ema(self) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Per hooked layer, its EMA (mean, var), each (C,) float32, or None before the first update."""
        return [layer.ema for layer in self._layers]

    def _make_hook(self, layer: BNLayerState):
        def hook(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if self._enabled:
                self._scope.record(layer, inputs[0], self.momentum, self.backend)

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
        self._scope.finalize(self._layers, self.momentum)
        losses = [layer.loss for layer in self._layers]
        if any(v is None for v in losses):
            raise RuntimeError(_NO_FORWARD)
        total = torch.stack(losses).sum() + (self.first_bn_multiplier - 1.0) * losses[0]
        for layer in self._layers:
            layer.loss = None
        return total

    def global_buffer_numel(self) -> int:
        """Floats in the one all-reduce per generator step of scope "global": sum_l (2 C_l + 1)
        (S1 and S2 per channel, one count per layer), 4 bytes each."""
        return sum(2 * layer.module.num_features + 1 for layer in self._layers)

    def update_momentum(self) -> None:
        """Fold the last batch's statistics into the EMA (once per synthesis batch; ``update_ema``)."""
        if self.momentum <= 0:
            return
        for layer in self._layers:
            if layer.stats is not None:
                layer.ema = update_ema(layer.ema, layer.stats, self.momentum)

    def state_dict(self) -> dict:
        """{"ema": [None | (mean, var), ...]}: one entry per hooked layer, CPU float32 (C,) tensors."""
        return {"ema": [None if e is None else (e[0].cpu(), e[1].cpu()) for e in self.ema]}

    def load_state_dict(self, state: dict) -> None:
        """Restore the EMA of ``state_dict()`` onto each layer's device.

        Raises:
            ValueError: if the state has another number of layers than the teacher.
        """
        if len(state["ema"]) != len(self._layers):
            raise ValueError(
                f"checkpoint has BN momentum state for {len(state['ema'])} layers, teacher has {len(self._layers)}"
            )
        for e, layer in zip(state["ema"], self._layers):
            device = layer.module.running_mean.device
            layer.ema = None if e is None else (e[0].to(device), e[1].to(device))

    def remove(self) -> None:
        """Remove every forward hook from the teacher."""
        for layer in self._layers:
            layer.handle.remove()
