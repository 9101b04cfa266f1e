"""Choose between the Triton kernels and the pure-PyTorch references, once.

    backend = select_backend(cfg_preference)           # "triton" or "reference"; once, at set-up time
    loss, mean, var = bn_stats_loss(x, rm, rv, ema_m, ema_v, m, backend=backend)
    reinit_noisy_linears(weight, bias, "normal", backend=backend, seed=noisy_seed(s, epoch, batch, rank))

``select_backend`` honours the environment variable NAYER_KERNELS (auto | triton | reference), which
overrides the preference given in code or config, so a run or a test can force either path without
editing a config. "auto" picks Triton only where it can launch: a CUDA device and an importable triton.

This module never imports triton itself (the Triton modules are imported on first use), so
``import nayer_kernels`` works on any machine, with or without triton, GPU or TRITON_INTERPRET.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from .bn_stats import bn_partial_sums_reference, bn_stats_loss_reference
from .noisy_init import reinit_noisy_linears_reference

__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "bn_partial_sums",
    "bn_stats_loss",
    "noisy_seed",
    "reinit_noisy_linears",
    "resolve_backend",
    "select_backend",
    "triton_available",
]

BACKENDS = ("auto", "triton", "reference")
BACKEND_ENV_VAR = "NAYER_KERNELS"

_MASK64 = (1 << 64) - 1


def triton_available() -> bool:
    """True when the ``triton`` package is installed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def select_backend(preference: str = "auto") -> str:
    """Resolve a kernel-backend preference to "triton" or "reference".

    Args:
        preference: "auto" (Triton when torch.cuda.is_available() and triton is installed, else the
            reference), "triton" or "reference" (forced). The environment variable NAYER_KERNELS,
            when set and non-empty, overrides it. Case-insensitive.

    Returns:
        "triton" or "reference". "triton" on a machine without CUDA is allowed (CPU tensors then need
        TRITON_INTERPRET=1, which is how the kernel tests run); "auto" there gives "reference".

    Raises:
        ValueError: for a value other than auto/triton/reference (naming where it came from).
        ModuleNotFoundError: for "triton" when the triton package is not installed (one line naming
            the extra; ``nayer_scale`` turns it into its MissingExtraError).
    """
    env = os.environ.get(BACKEND_ENV_VAR, "").strip().lower()
    source = f"environment variable {BACKEND_ENV_VAR}" if env else "kernel backend preference"
    choice = env or str(preference).strip().lower()
    if choice not in BACKENDS:
        raise ValueError(f"{source} is {choice!r}; choose one of {BACKENDS}")
    if choice == "auto":
        return "triton" if torch.cuda.is_available() and triton_available() else "reference"
    if choice == "triton" and not triton_available():
        raise ModuleNotFoundError(
            f"{source} asks for the Triton kernels, but triton is not installed: "
            'pip install "nayer-scale[triton]" (or use "reference")',
            name="triton",
        )
    return choice


def resolve_backend(backend: str) -> str:
    """Resolve a ``backend`` argument: "triton" / "reference" as given, "auto" through ``select_backend``.

    Unlike ``select_backend``, an explicit "triton" or "reference" is taken as already resolved (the
    environment variable is not consulted again). "auto" is resolved once per (value, NAYER_KERNELS)
    pair and cached, so calling this in a hot loop costs a dict lookup, not a search for triton.

    Raises:
        ValueError / ImportError: as ``select_backend`` (an unknown value, triton missing).
    """
    if backend == "triton" or backend == "reference":  # the hot path: nothing to resolve
        return backend
    return _resolve_cached(str(backend), os.environ.get(BACKEND_ENV_VAR, ""))


@functools.lru_cache(maxsize=None)
def _resolve_cached(backend: str, env: str) -> str:
    """``resolve_backend`` of anything but the two resolved names; ``env`` is only the cache key."""
    backend = backend.strip().lower()
    if backend == "auto":
        return select_backend("auto")
    if backend not in BACKENDS:
        raise ValueError(f"kernel backend is {backend!r}; choose one of {BACKENDS}")
    return backend


def bn_stats_loss(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    ema_mean: torch.Tensor | None = None,
    ema_var: torch.Tensor | None = None,
    momentum: float = 0.0,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BN-statistics loss of one teacher BatchNorm layer with the chosen implementation.

    L = ||var_run - var_cmp||_2 + ||mu_run - mu_cmp||_2 (DeepInversion, Yin et al. CVPR 2020, Eq. 4;
    NAYER, Tran et al. CVPR 2024, Eq. 3), (mu_cmp, var_cmp) = (1 - m) batch + m EMA when an EMA is
    given and m > 0, else the batch's mean and biased variance over (N, H, W).

    Args:
        x: (N, C, H, W) or (N, C) float input, any memory format.
        running_mean, running_var: (C,) BatchNorm buffers.
        ema_mean, ema_var: (C,) EMA of earlier batches' statistics, or None.
        momentum: m in [0, 1).
        backend: "triton" or "reference" (as returned by ``select_backend``, resolved once at set-up:
            the hot path then does no work to dispatch), or "auto" (resolved through the cached
            ``resolve_backend``, environment variable included).

    Returns:
        (loss, mean, var): float32 scalar differentiable w.r.t. x (through the batch statistics,
        EMA blend included), and the batch's (C,) float32 statistics, detached for both backends
        (they are EMA state, see ``update_ema``).

    Raises:
        ValueError: bad input shapes (see the implementations) or an unknown backend.
    """
    if resolve_backend(backend) == "triton":
        from .bn_loss_triton import bn_stats_loss_triton

        return bn_stats_loss_triton(x, running_mean, running_var, ema_mean, ema_var, momentum)
    return bn_stats_loss_reference(x, running_mean, running_var, ema_mean, ema_var, momentum)


def bn_partial_sums(x: torch.Tensor, shift: torch.Tensor, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Partial BN statistics S1 = sum (x - K), S2 = sum (x - K)^2 per channel, with the chosen
    implementation: the first half of the BN-statistics loss split for ``synthesis.bn_stats_scope=
    global`` (sum over processes, then ``bn_stats_loss_from_sums``).

    Args:
        x: (N, C, H, W) or (N, C) float input, any memory format; differentiable.
        shift: (C,) K, identical on every process (the layer's running mean).
        backend: "triton", "reference" or "auto" (see ``bn_stats_loss``).

    Returns:
        (S1, S2): (C,) float32 each, differentiable w.r.t. x; M = x.numel() / C elements each.

    Raises:
        ValueError: bad shapes or an unknown backend.
    """
    if resolve_backend(backend) == "triton":
        from .bn_sums_triton import bn_partial_sums_triton

        return bn_partial_sums_triton(x, shift)
    return bn_partial_sums_reference(x, shift)


def reinit_noisy_linears(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    init: str = "normal",
    backend: str = "auto",
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> None:
    """Re-initialise L stacked noisy linears in place (NAYER, Tran et al. CVPR 2024, Sec. 3.2).

    W ~ N(0, 1) ("normal", published code) or U(-1/sqrt(in), 1/sqrt(in)) ("kaiming_uniform");
    bias = 0.

    Args:
        weight: (L, out, in) float tensor; bias: (L, out) or None.
        init: "normal" or "kaiming_uniform".
        backend: "triton", "reference" or "auto" (see ``bn_stats_loss``).
        generator: reference backend: the torch.Generator to draw from. Triton backend: only used to
            draw a seed when ``seed`` is None.
        seed: int in [0, 2**63), e.g. ``noisy_seed(run_seed, epoch, batch, rank)``. Triton: the
            Philox seed. Reference without a generator: seeds a fresh torch.Generator on weight's
            device, so both backends are reproducible from the seed (with different numbers: they
            use different generators). When seed and generator are both None, the Triton backend
            draws a seed from torch's global CPU generator (so torch.manual_seed still controls it).

    Raises:
        ValueError: unknown init or backend, weight not 3-D, or (Triton) non-contiguous tensors.
    """
    if resolve_backend(backend) == "triton":
        from .noisy_init_triton import reinit_noisy_linears_triton

        if seed is None:
            # A CUDA generator makes this a host-device sync: pass ``seed`` in hot loops.
            device = generator.device if generator is not None else "cpu"
            seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=device).item())
        reinit_noisy_linears_triton(weight, bias, init, seed)
        return
    if seed is not None and generator is None:
        generator = torch.Generator(device=weight.device).manual_seed(int(seed))
    reinit_noisy_linears_reference(weight, bias, init, generator)


def _splitmix64(z: int) -> int:
    """SplitMix64 step (Steele et al., OOPSLA 2014): a bijection of 64-bit ints with full avalanche.

    A copy of ``nayer_scale.seeding.splitmix64`` (this package does not import ``nayer_scale``);
    ``tests/unit/test_seeding.py`` holds the two equal, and ``noisy_seed`` equal to
    ``derive_seed(run_seed, epoch, batch_index, rank) >> 1``."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def noisy_seed(run_seed: int, epoch: int, batch_index: int, rank: int) -> int:
    """Seed of the noisy-layer re-initialisation of one synthesis batch on one rank.

    h = SplitMix64(SplitMix64(SplitMix64(SplitMix64(run_seed) ^ epoch) ^ batch_index) ^ rank), and
    the seed is h >> 1 (63 bits, a non-negative int64). Each step is a bijection, so changing any
    one field always changes h; two different tuples get the same seed only by chance, with
    probability about 2**-63 per pair (63 rather than 31 bits: a long multi-rank run draws millions
    of seeds, and with 31 bits the birthday bound would make some collision near-certain). Pure Python, no
    device work; the same on every machine.

    Args:
        run_seed, epoch, batch_index, rank: non-negative ints below 2**64.

    Returns:
        int in [0, 2**63), for ``reinit_noisy_linears(..., seed=...)`` or torch.Generator.manual_seed.

    Raises:
        ValueError: for a negative or too large field.
    """
    h = 0
    for name, value in (("run_seed", run_seed), ("epoch", epoch), ("batch_index", batch_index), ("rank", rank)):
        value = int(value)
        if not 0 <= value <= _MASK64:
            raise ValueError(f"noisy_seed: {name} must be in [0, 2**64), got {value}")
        h = _splitmix64(h ^ value)
    return h >> 1
