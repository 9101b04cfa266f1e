"""Triton kernels against their pure-PyTorch references, and the backend dispatch.

On a CPU machine the kernels run in Triton's interpreter on CPU tensors; on a GPU machine they run
compiled on CUDA tensors, and the ``gpu``-marked tests add realistic shapes.

Every test that launches a kernel requests the ``triton_kernels`` fixture of tests/conftest.py
(directly, through ``needs_kernels``, or through the fixtures that hand it the kernel modules): it
sets TRITON_INTERPRET=1 only without a CUDA device and only for that test, and the kernel modules
are imported inside those tests, never at collection (see tests/conftest.py for how triton 3.7
reads the variable). Should triton already have been imported without the interpreter (a plugin),
the kernel tests here are skipped and one test re-runs this file in a subprocess with
TRITON_INTERPRET=1 instead.
The runs of this topic (distillations, subprocesses) are in tests/integration/test_kernels_runs.py.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

ON_GPU = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if ON_GPU else "cpu"

from helpers.kernels import noisy_triton  # noqa: E402, F401 (fixtures, found by name)
from nayer_kernels import (  # noqa: E402
    bn_stats_loss,
    bn_stats_loss_reference,
    dispatch,  # noqa: E402
    noisy_seed,
    reinit_noisy_linears,
    reinit_noisy_linears_reference,
    select_backend,
)

needs_kernels = pytest.mark.usefixtures("triton_kernels")


@pytest.fixture
def bn_triton(triton_kernels):
    """The fused BN-statistics loss op module (imported with the interpreter on where it runs)."""
    import nayer_kernels.bn_loss_triton as module

    return module


@pytest.fixture
def bn_tiles(triton_kernels):
    """The tiling module shared by the BN-statistics ops (its launch constants)."""
    import nayer_kernels.bn_tiles_triton as module

    return module


# (atol, rtol) per input dtype. The statistics and the loss are fp32 whatever the input dtype, so
# they get fp32 tolerances; dL/dx is stored in the input dtype (atol relative to max |dL/dx|).
STATS_TOL = (1e-5, 1e-5)
GRAD_TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1.6e-2), torch.float16: (1e-3, 1e-3)}


# --------------------------------------------------------------------------------------------------
# BN-statistics loss
# --------------------------------------------------------------------------------------------------


def _bn_case(shape, dtype, channels_last, momentum_on, offset=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = (torch.randn(shape, generator=g) * 2.0 + offset).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = [torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5]
    if momentum_on:
        args += [torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5, 0.9]
    return x.to(DEVICE), [a.to(DEVICE) if torch.is_tensor(a) else a for a in args]


def _run(fn, x, args, upstream=2.5):
    """(loss, mean, var, dL/dx) of ``upstream * fn(x, *args)[0]``."""
    x = x.detach().clone().requires_grad_(True)
    loss, mean, var = fn(x, *args)
    (loss * upstream).backward()
    return loss.detach(), mean.detach(), var.detach(), x.grad


def _assert_matches_reference(x, args, upstream=2.5):
    import nayer_kernels.bn_loss_triton as bn_triton  # in a kernel test: the fixture has set the mode

    loss, mean, var, dx = _run(bn_triton.bn_stats_loss_triton, x, args, upstream)
    r_loss, r_mean, r_var, r_dx = _run(bn_stats_loss_reference, x, args, upstream)
    atol, rtol = STATS_TOL
    assert loss.dtype == mean.dtype == var.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, r_loss, atol=atol, rtol=rtol)
    torch.testing.assert_close(mean, r_mean, atol=atol, rtol=rtol)
    torch.testing.assert_close(var, r_var, atol=atol, rtol=rtol)
    atol, rtol = GRAD_TOL[x.dtype]
    assert dx.dtype == x.dtype and dx.shape == x.shape
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):  # dL/dx has x's format
        for fmt in (torch.contiguous_format, torch.channels_last):
            assert dx.is_contiguous(memory_format=fmt) == x.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(dx, r_dx, atol=atol * r_dx.abs().max().item(), rtol=rtol)


# 1x70x3x3: more channels than BLOCK_C = 64; 4x6x40x33: several spatial blocks (S > 1024 in NCHW);
# (6, 10): BatchNorm1d input; (2, 5, 7): (N, C, L).
SHAPES = [(3, 7, 5, 9), (2, 13, 1, 1), (1, 70, 3, 3), (4, 6, 40, 33), (6, 10), (2, 5, 7)]
LAYOUTS = [(s, cl) for s in SHAPES for cl in ([False, True] if len(s) == 4 else [False])]


@needs_kernels
@pytest.mark.parametrize("momentum_on", [False, True], ids=["no_ema", "ema"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "shape,channels_last", LAYOUTS, ids=["x".join(map(str, s)) + ("-nhwc" if cl else "") for s, cl in LAYOUTS]
)
def test_bn_stats_matches_reference(shape, channels_last, dtype, momentum_on):
    x, args = _bn_case(shape, dtype, channels_last, momentum_on)
    _assert_matches_reference(x, args)


@needs_kernels
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_bn_stats_multi_block_paths(monkeypatch, bn_triton, bn_tiles, channels_last):
    """Tiny tiles: several channel and spatial blocks, loops over n with a ragged last chunk, and
    several finalize blocks, so every combine path of the two-level reduction runs."""
    for module, name, value in [
        (bn_tiles, "TARGET_PROGRAMS", 2),
        (bn_tiles, "MAX_BLOCK_S", 8),
        (bn_tiles, "MAX_BLOCK_C", 2),
        (bn_tiles, "TILE_ELEMENTS", 16),
        (bn_triton, "FINALIZE_BLOCK_C", 2),
        (bn_triton, "FINALIZE_BLOCK_P", 2),
    ]:
        monkeypatch.setattr(module, name, value)
    x, args = _bn_case((5, 3, 4, 5), torch.float32, channels_last, True)
    cfg = bn_tiles.launch_config(bn_tiles.as_ncs(x))
    assert cfg["num_c_blocks"] > 1 and cfg["n_per_program"] > 1 and 5 % cfg["n_per_program"] != 0
    assert cfg["num_rows"] > bn_triton.FINALIZE_BLOCK_P
    _assert_matches_reference(x, args, upstream=-0.7)


# Odd shapes for the two-stage finalize: with 2x4 tiles and 4-row finalize steps, (3, 7, 5, 9) gives
# 36 partial rows in 3 groups of 12 (stage 1 loops 3 steps), (5, 3, 4, 5) 25 rows in groups of 8
# (a ragged last group of 1), (6, 10) 6 rows in groups of 4, and (2, 5, 7), (2, 13, 1, 1) at most 4
# rows (stage 2 alone).
FINALIZE_SHAPES = [(3, 7, 5, 9), (5, 3, 4, 5), (6, 10), (2, 5, 7), (2, 13, 1, 1)]
FINALIZE_LAYOUTS = [(s, cl) for s in FINALIZE_SHAPES for cl in ([False, True] if len(s) == 4 and s[2] > 1 else [False])]


@needs_kernels
@pytest.mark.parametrize("momentum_on", [False, True], ids=["no_ema", "ema"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "shape,channels_last",
    FINALIZE_LAYOUTS,
    ids=["x".join(map(str, s)) + ("-nhwc" if cl else "") for s, cl in FINALIZE_LAYOUTS],
)
def test_bn_stats_two_stage_finalize_matches_reference(
    monkeypatch, bn_triton, bn_tiles, shape, channels_last, dtype, momentum_on
):
    """The finalize parallel over the partial rows (stage 1: a 2-D grid of channel blocks x row
    groups; stage 2: the groups) against the reference, forward and backward."""
    for module, name, value in [
        (bn_tiles, "MAX_BLOCK_S", 4),
        (bn_tiles, "MAX_BLOCK_C", 2),
        (bn_tiles, "TILE_ELEMENTS", 8),
        (bn_triton, "FINALIZE_BLOCK_C", 4),
        (bn_triton, "FINALIZE_BLOCK_P", 4),
    ]:
        monkeypatch.setattr(module, name, value)
    x, args = _bn_case(shape, dtype, channels_last, momentum_on)
    rows = bn_tiles.launch_config(bn_tiles.as_ncs(x))["num_rows"]
    rows_per_group, groups = bn_triton.finalize_plan(rows)
    assert groups <= 4 and rows_per_group * groups >= rows > rows_per_group * (groups - 1)
    assert (groups > 1) == (rows > 4) and (rows_per_group % 4 == 0 or groups == 1)
    _assert_matches_reference(x, args, upstream=1.3)


@needs_kernels
def test_bn_stats_strided_views_and_no_grad(bn_triton):
    # Spatial dims that cannot be merged into one stride (copied once) and a channel-sliced view.
    x, args = _bn_case((2, 4, 5, 6), torch.float32, False, True)
    _assert_matches_reference(x.transpose(2, 3), args)
    wide, _ = _bn_case((2, 8, 3, 3), torch.float32, False, False)
    _assert_matches_reference(wide[:, ::2], args)
    with torch.no_grad():
        loss, mean, var = bn_triton.bn_stats_loss_triton(x, *args)
    torch.testing.assert_close(loss, bn_stats_loss_reference(x, *args)[0], atol=1e-5, rtol=1e-5)


@needs_kernels
def test_bn_stats_large_mean_no_cancellation(bn_triton):
    """|mean| / std = 1e5: E[x^2] - E[x]^2 in fp32 would return garbage; the shifted, centred
    two-level reduction matches the float64 variance."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 3, 16, 16, generator=g) * 0.01 + 1000.0).to(DEVICE)
    _, mean, var = bn_triton.bn_stats_loss_triton(x, torch.zeros(3, device=DEVICE), torch.ones(3, device=DEVICE))
    x64 = x.double()
    torch.testing.assert_close(var.double(), x64.var((0, 2, 3), unbiased=False), atol=0, rtol=1e-4)
    torch.testing.assert_close(mean.double(), x64.mean((0, 2, 3)), atol=0, rtol=1e-7)


@needs_kernels
def test_bn_stats_zero_norm_gives_zero_gradient(bn_triton):
    x, args = _bn_case((3, 4, 2, 5), torch.float32, False, False)
    _, mean, var = bn_triton.bn_stats_loss_triton(x, *args)
    # Buffers equal to this batch's statistics: both norms are exactly 0 (same kernel, same input).
    loss, _, _, dx = _run(bn_triton.bn_stats_loss_triton, x, [mean, var])
    assert loss.item() == 0.0
    assert torch.isfinite(dx).all() and (dx == 0).all()
    # Only the mean term at 0: the gradient is the variance term's alone. (Not compared with the
    # reference here: its own mean differs from ours by ~1e-8, and the norm's gradient near 0 is a
    # unit vector of arbitrary direction.)
    loss, _, _, dx = _run(bn_triton.bn_stats_loss_triton, x, [mean, args[1]])
    xr = x.detach().clone().requires_grad_(True)
    var_term = torch.linalg.vector_norm(args[1] - xr.var((0, 2, 3), unbiased=False))
    (var_term * 2.5).backward()
    torch.testing.assert_close(dx, xr.grad, atol=1e-5 * xr.grad.abs().max().item(), rtol=1e-4)


@needs_kernels
def test_bn_stats_outputs_and_errors(bn_triton):
    x, args = _bn_case((2, 3, 4, 4), torch.float32, False, False)
    x.requires_grad_(True)
    loss, mean, var = bn_triton.bn_stats_loss_triton(x, *args)
    assert loss.requires_grad and not mean.requires_grad and not var.requires_grad
    with pytest.raises(ValueError, match="channels"):
        bn_triton.bn_stats_loss_triton(x, args[0][:2], args[1][:2])
    with pytest.raises(ValueError, match="expects"):
        bn_triton.bn_stats_loss_triton(torch.randn(5, device=DEVICE), args[0], args[1])
    with pytest.raises(ValueError, match="empty"):
        bn_triton.bn_stats_loss_triton(torch.randn(0, 3, 2, 2, device=DEVICE), args[0], args[1])


# --------------------------------------------------------------------------------------------------
# Noisy-layer re-initialisation
# --------------------------------------------------------------------------------------------------


def _reinit(shape=(4, 32, 64), init="normal", seed=1234, dtype=torch.float32, bias=True):
    import nayer_kernels.noisy_init_triton as noisy_triton  # in a kernel test: the fixture has set the mode

    w = torch.full(shape, 7.0, dtype=dtype, device=DEVICE)
    b = torch.ones(shape[:2], dtype=dtype, device=DEVICE) if bias else None
    noisy_triton.reinit_noisy_linears_triton(w, b, init, seed)
    return w, b


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_reinit_statistics(dtype):
    w, b = _reinit(init="normal", dtype=dtype)
    n = w.numel()  # 8192 draws: the mean's standard error is 1/sqrt(n) ~ 0.011
    assert (b == 0).all()
    assert abs(w.float().mean().item()) < 5 / n**0.5 and abs(w.float().std().item() - 1) < 0.05
    assert w.float().abs().max().item() < 6  # no garbage / inf
    w, b = _reinit(init="kaiming_uniform", dtype=dtype)
    bound = 1 / 64**0.5
    assert (b == 0).all() and w.float().abs().max().item() <= bound * (1 + 2**-7)
    assert abs(w.float().mean().item()) < 5 * bound / (3 * n) ** 0.5
    assert abs(w.float().std().item() / (1 / (3 * 64) ** 0.5) - 1) < 0.05  # std of U(-b, b) = b/sqrt(3)
    # Same moments as the torch.Generator reference (different numbers: different generators).
    ref = torch.empty_like(w)
    reinit_noisy_linears_reference(ref, None, "kaiming_uniform", torch.Generator(device=DEVICE).manual_seed(0))
    assert abs(w.float().std().item() - ref.float().std().item()) < 0.05 * ref.float().std().item()


@needs_kernels
@pytest.mark.parametrize("init", ["normal", "kaiming_uniform"])
def test_reinit_determinism_and_independence(init):
    shape = (6, 16, 32)
    first, _ = _reinit(shape, init, noisy_seed(0, 3, 5, 0))
    again, _ = _reinit(shape, init, noisy_seed(0, 3, 5, 0))
    assert torch.equal(first, again)  # same seed -> bit-identical weights
    others = [noisy_seed(1, 3, 5, 0), noisy_seed(0, 4, 5, 0), noisy_seed(0, 3, 6, 0), noisy_seed(0, 3, 5, 1)]
    draws = [first] + [_reinit(shape, init, s)[0] for s in others]
    # No correlation across layers of one draw, nor between draws of neighbouring (epoch, batch, rank).
    rows = torch.cat([d.reshape(shape[0], -1) for d in draws]).float().cpu()  # 30 x 512
    corr = torch.corrcoef(rows) - torch.eye(rows.shape[0])
    assert corr.abs().max().item() < 0.25  # 435 pairs of 512 samples: |r| ~ N(0, 0.044)
    assert corr.abs().mean().item() < 0.06


@needs_kernels
def test_reinit_interface(noisy_triton):
    w = torch.nn.Parameter(torch.zeros(2, 3, 4, device=DEVICE))
    version = w._version
    noisy_triton.reinit_noisy_linears_triton(w, None, "normal", 5)  # no bias, leaf requiring grad
    assert w._version > version and w.abs().sum() > 0  # autograd sees the in-place write
    with pytest.raises(ValueError, match="unknown"):
        noisy_triton.reinit_noisy_linears_triton(w, None, "xavier", 5)
    with pytest.raises(ValueError, match="3-D|stacked"):
        noisy_triton.reinit_noisy_linears_triton(torch.zeros(3, 4, device=DEVICE), None, "normal", 5)
    with pytest.raises(ValueError, match="contiguous"):
        noisy_triton.reinit_noisy_linears_triton(torch.zeros(2, 4, 3, device=DEVICE).transpose(1, 2), None, "normal", 5)
    with pytest.raises(ValueError, match="bias"):
        noisy_triton.reinit_noisy_linears_triton(
            torch.zeros(2, 3, 4, device=DEVICE), torch.zeros(3, device=DEVICE), "normal", 5
        )
    with pytest.raises(ValueError, match="seed"):
        noisy_triton.reinit_noisy_linears_triton(torch.zeros(2, 3, 4, device=DEVICE), None, "normal", -1)


def test_noisy_seed_mixing():
    seeds = {noisy_seed(r, e, b, k) for r in range(3) for e in range(5) for b in range(20) for k in range(8)}
    assert len(seeds) == 3 * 5 * 20 * 8 and all(0 <= s < 2**63 for s in seeds)
    assert noisy_seed(0, 1, 2, 3) == noisy_seed(0, 1, 2, 3) == 735100177291612810  # pinned: stable across versions
    assert noisy_seed(0, 1, 2, 3) != noisy_seed(0, 1, 3, 2)  # order matters
    with pytest.raises(ValueError, match="epoch"):
        noisy_seed(0, -1, 0, 0)


# --------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------


def test_select_backend(monkeypatch):
    monkeypatch.delenv(dispatch.BACKEND_ENV_VAR, raising=False)
    assert select_backend("reference") == "reference"
    if HAS_TRITON:
        assert select_backend("Triton") == "triton"
    assert select_backend("auto") == ("triton" if ON_GPU and HAS_TRITON else "reference")
    with pytest.raises(ValueError, match="preference"):
        select_backend("cuda")
    # The environment variable overrides the preference given in code or config.
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "reference")
    assert select_backend("triton") == "reference"
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "")  # empty: ignored
    assert select_backend("reference") == "reference"
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "fast")
    with pytest.raises(ValueError, match=dispatch.BACKEND_ENV_VAR):
        select_backend("reference")
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "triton")
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    with pytest.raises(ImportError, match="triton"):
        select_backend("auto")
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "auto")
    assert select_backend("reference") == "reference"  # auto without triton


def test_resolve_backend_passes_resolved_names_and_caches_auto(monkeypatch):
    monkeypatch.delenv(dispatch.BACKEND_ENV_VAR, raising=False)
    dispatch._resolve_cached.cache_clear()
    calls = []
    real_select = dispatch.select_backend
    monkeypatch.setattr(
        dispatch, "select_backend", lambda preference="auto": calls.append(preference) or real_select(preference)
    )
    assert dispatch.resolve_backend("triton") == "triton" and dispatch.resolve_backend("reference") == "reference"
    first = dispatch.resolve_backend("auto")
    assert all(dispatch.resolve_backend("auto") == first for _ in range(3)) and calls == ["auto"]
    monkeypatch.setenv(dispatch.BACKEND_ENV_VAR, "reference")  # a new environment value: resolved again
    assert dispatch.resolve_backend("auto") == "reference" and calls == ["auto", "auto"]
    assert dispatch.resolve_backend("Reference") == "reference"
    with pytest.raises(ValueError, match="backend"):
        dispatch.resolve_backend("cuda")
    dispatch._resolve_cached.cache_clear()


@needs_kernels
def test_front_functions_call_the_chosen_backend(monkeypatch, bn_triton):
    monkeypatch.delenv(dispatch.BACKEND_ENV_VAR, raising=False)
    x, args = _bn_case((2, 3, 4, 5), torch.float32, False, True)
    x.requires_grad_(True)
    ran = []
    real_triton, real_reference = bn_triton.bn_stats_loss_triton, dispatch.bn_stats_loss_reference
    monkeypatch.setattr(bn_triton, "bn_stats_loss_triton", lambda *a: ran.append("triton") or real_triton(*a))
    monkeypatch.setattr(dispatch, "bn_stats_loss_reference", lambda *a: ran.append("reference") or real_reference(*a))
    loss_t, mean_t, _ = bn_stats_loss(x, *args, backend="triton")
    loss_r, mean_r, _ = bn_stats_loss(x, *args, backend="reference")
    assert ran == ["triton", "reference"]
    assert not mean_t.requires_grad and not mean_r.requires_grad  # detached for both
    torch.testing.assert_close(loss_t, loss_r, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="backend"):
        bn_stats_loss(x, *args, backend="cuda")
    for backend in ("triton", "reference"):
        a, b = torch.empty(3, 8, 16, device=DEVICE), torch.empty(3, 8, 16, device=DEVICE)
        reinit_noisy_linears(a, None, "normal", backend=backend, seed=noisy_seed(0, 1, 2, 0))
        reinit_noisy_linears(b, None, "normal", backend=backend, seed=noisy_seed(0, 1, 2, 0))
        assert torch.equal(a, b)
        # the generator lives on the tensors' device (a CPU generator cannot draw into a CUDA tensor)
        reinit_noisy_linears(a, None, "normal", backend=backend, generator=torch.Generator(a.device).manual_seed(3))
        reinit_noisy_linears(b, None, "normal", backend=backend, generator=torch.Generator(b.device).manual_seed(3))
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize(
    "shape", [(256, 64, 56, 56), (256, 2048, 7, 7), (400, 16, 32, 32)], ids=lambda s: "x".join(map(str, s))
)
def test_gpu_bn_stats_realistic(shape, channels_last):
    x, args = _bn_case(shape, torch.bfloat16, channels_last, True)
    _assert_matches_reference(x, args)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
def test_gpu_bn_stats_large_offset_fp32(bn_triton):
    x = torch.randn(256, 64, 56, 56, device="cuda") * 0.01 + 1000.0
    _, mean, var = bn_triton.bn_stats_loss_triton(x, torch.zeros(64, device="cuda"), torch.ones(64, device="cuda"))
    torch.testing.assert_close(var.double(), x.double().var((0, 2, 3), unbiased=False), atol=0, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("init", ["normal", "kaiming_uniform"])
def test_gpu_reinit_realistic(init):
    shape = (40, 1000, 512)
    w, b = _reinit(shape, init, noisy_seed(0, 0, 0, 0))
    again, _ = _reinit(shape, init, noisy_seed(0, 0, 0, 0))
    assert torch.equal(w, again) and (b == 0).all()
    std = 1.0 if init == "normal" else 1 / (3 * 512) ** 0.5
    assert abs(w.mean().item()) < 5 * std / w.numel() ** 0.5 and abs(w.std().item() / std - 1) < 0.01
    corr = torch.corrcoef(w.reshape(40, -1)) - torch.eye(40, device="cuda")
    assert corr.abs().max().item() < 0.01  # 512000 samples per layer: |r| ~ N(0, 0.0014)
