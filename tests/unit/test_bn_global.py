"""synthesis.bn_stats_scope=global: the BN-statistics loss on the union of all processes'
synthesis batches, through one all-reduce per generator step.

Oracle: the published per-process loss (scope "process") computed by ONE process on the
concatenation of every process's batch. With 2 gloo processes, each process's loss must equal it
and its dL/dx must equal the oracle's gradient restricted to its own rows (an all-reduce whose
backward summed the gradients would give twice that), for the PyTorch reference and for the
Triton kernels in the interpreter; the EMA (momentum) is global too.
The runs of this topic (distillations, subprocesses) are in tests/integration/test_bn_global_runs.py.
"""

from __future__ import annotations

import pytest
import torch
from bn_global_worker import FIRST_BN_MULTIPLIER, MOMENTUM, batches, run_steps, tiny_teacher

from helpers.bn_global import _ema_tol, _oracle
from nayer_kernels import bn_partial_sums_reference, bn_stats_loss_from_sums, bn_stats_loss_reference
from nayer_scale.synthesis.bn_hooks import BNStatsHooks

ON_GPU = torch.cuda.is_available()
TOL = {"rtol": 1e-5, "atol": 1e-6}
# var = S2 / M - (S1 / M)^2 cancels when |mean - running mean| >> std (this teacher's running means
# are random, up to ~3 std off): fp32 statistics agree to ~1e-5 relative, not 1e-7
STATS_TOL = {"rtol": 1e-4, "atol": 1e-5}


def _tol(key: str) -> dict:
    return STATS_TOL if key.startswith(("ema", "grad")) else TOL


def test_partial_sums_finalize_to_the_reference_loss_and_gradient():
    """One layer, one process: sums -> finalize gives the reference loss and dL/dx (EMA on), also
    for a mean 1000 std away from 0 (the running-mean shift keeps the float32 sums precise) and
    channels_last. Oracle: the reference in float64."""
    g = torch.Generator().manual_seed(0)
    for offset, cl in ((0.0, False), (1000.0, True)):
        x = torch.randn(4, 3, 5, 5, generator=g) * 0.5 + offset
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        rm, rv = x.mean((0, 2, 3)) + torch.randn(3, generator=g) * 0.1, torch.rand(3, generator=g) + 0.5
        ema = (rm + 0.2, rv * 1.1)
        x1, x2 = x.double().requires_grad_(), x.clone().requires_grad_()
        ref, ref_mean, ref_var = bn_stats_loss_reference(
            x1, rm.double(), rv.double(), ema[0].double(), ema[1].double(), 0.9
        )
        s1, s2 = bn_partial_sums_reference(x2, rm)
        assert s1.dtype == s2.dtype == torch.float32
        loss, mean, var = bn_stats_loss_from_sums(x.numel() / 3, s1, s2, rm, rm, rv, *ema, 0.9)
        ref.backward()
        loss.backward()
        torch.testing.assert_close(loss.double(), ref, **TOL)
        torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(var.double(), ref_var, rtol=1e-4, atol=1e-6)
        assert x2.grad.dtype == torch.float32 and x2.grad.is_contiguous(memory_format=torch.channels_last) == cl
        torch.testing.assert_close(x2.grad.double(), x1.grad, rtol=1e-4, atol=1e-5 * x1.grad.abs().max().item())


@pytest.mark.usefixtures("triton_kernels")  # compiled on CUDA, else the interpreter for this test (tests/conftest.py)
@pytest.mark.parametrize(
    "dtype, channels_last", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, True)]
)
def test_triton_partial_sums_match_the_reference(monkeypatch, dtype, channels_last):
    """The Triton split (partial-statistics kernel with a given shift, tile combine, sums backward)
    against the reference, with tiny tiles so that several tiles and sample blocks combine."""
    import nayer_kernels.bn_tiles_triton as bn_tiles
    from nayer_kernels import bn_partial_sums_triton

    monkeypatch.setattr(bn_tiles, "TILE_ELEMENTS", 16)
    monkeypatch.setattr(bn_tiles, "MAX_BLOCK_C", 4)
    monkeypatch.setattr(bn_tiles, "TARGET_PROGRAMS", 8)
    device = "cuda" if ON_GPU else "cpu"
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(5, 6, 3, 5, generator=g) * 2 + 40).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(device)
    shift = torch.full((6,), 40.0, device=device) + torch.randn(6, generator=g).to(device)
    weights = torch.randn(2, 6, generator=g).to(device)
    results = []
    for fn in (bn_partial_sums_reference, bn_partial_sums_triton):
        xi = x.clone().requires_grad_()
        s1, s2 = fn(xi, shift)
        (weights[0] @ s1 + weights[1] @ s2).backward()
        results.append((s1, s2, xi.grad))
    (r1, r2, rg), (t1, t2, tg) = results
    assert t1.dtype == t2.dtype == torch.float32 and tg.dtype == dtype
    assert tg.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(t1, r1, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(t2, r2, rtol=1e-5, atol=1e-4)
    grad_tol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-2, 1.6e-2)
    torch.testing.assert_close(tg, rg, rtol=grad_tol[1], atol=grad_tol[0] * rg.abs().max().item())


def test_global_scope_on_one_process_is_the_process_scope():
    """Without a process group the all-reduce is the identity: both scopes agree, and the one
    reduce buffer holds sum_l (2 C_l + 1) floats."""
    teacher = tiny_teacher()
    hooks = BNStatsHooks(teacher, MOMENTUM, FIRST_BN_MULTIPLIER, "reference", scope="global")
    assert hooks.global_buffer_numel() == (2 * 4 + 1) + (2 * 5 + 1) + (2 * 6 + 1)
    got = run_steps(hooks, teacher, batches(1))
    oracle = _oracle(1)
    for key, value in oracle.items():
        torch.testing.assert_close(
            got[key], value, **_ema_tol(key, oracle) if key.startswith("ema") else _tol(key), msg=key
        )
    with pytest.raises(ValueError, match="scope"):
        BNStatsHooks(teacher, scope="node")


def test_global_scope_makes_one_all_reduce_per_step():
    """All layers go through ONE reduce call per loss(), and the reduce's output drives the loss."""
    teacher = tiny_teacher()
    calls = []

    def doubling(flat):  # a stand-in collective: a second process with the same batch
        calls.append(flat.numel())
        return flat * 2

    hooks = BNStatsHooks(teacher, 0.0, 1.0, "reference", scope="global", all_reduce=doubling)
    x = batches(1)[0]
    with hooks.active():
        teacher(x)
    loss = hooks.loss()
    assert calls == [hooks.global_buffer_numel()]
    # the same batch twice has the same statistics: the loss does not change
    plain = BNStatsHooks(teacher, 0.0, 1.0, "reference")
    with plain.active():
        teacher(x)
    torch.testing.assert_close(loss, plain.loss(), **TOL)


def test_config_field_is_checked_and_not_resumable():
    """synthesis.bn_stats_scope: a Literal (bad values refused naming the key), default "process",
    and a change on resume is refused (the loss would change under the run)."""
    from nayer_scale.config import ConfigError, apply_overrides, check_resume_compatible
    from nayer_scale.recipes import get_preset

    cfg = get_preset("fashion_mnist")
    assert cfg.synthesis.bn_stats_scope == "process"
    with pytest.raises(ConfigError, match="synthesis.bn_stats_scope"):
        apply_overrides(get_preset("fashion_mnist"), ["synthesis.bn_stats_scope=node"]).validate()
    changed = apply_overrides(get_preset("fashion_mnist"), ["synthesis.bn_stats_scope=global"]).validate()
    assert changed.synthesis.bn_stats_scope == "global"
    with pytest.raises(ConfigError, match="bn_stats_scope"):
        check_resume_compatible(cfg.to_dict(), changed.to_dict())
    # a checkpoint written before the field existed resumes as "process"
    old = cfg.to_dict()
    del old["synthesis"]["bn_stats_scope"]
    assert check_resume_compatible(old, cfg.to_dict()) == []
