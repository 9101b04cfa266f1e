"""BN-statistics hooks and losses against direct computations (the formulas of docs/method.md, "The synthesis
loss": NAYER, Tran et al., CVPR 2024, as the published code computes them)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nayer_kernels import bn_stats_loss_reference, update_ema
from nayer_scale.losses import adversarial_loss, kd_loss
from nayer_scale.synthesis.bn_hooks import BNStatsHooks


def _direct_bn_loss(x, bn, ema=None, m=0.0):
    # The published DeepInversionHook, written out.
    nch = x.shape[1]
    mean = x.mean([0, 2, 3])
    var = x.permute(1, 0, 2, 3).contiguous().view([nch, -1]).var(1, unbiased=False)
    if ema is not None:
        mean = (1 - m) * mean + m * ema[0]
        var = (1 - m) * var + m * ema[1]
    return torch.norm(bn.running_var - var, 2) + torch.norm(bn.running_mean - mean, 2)


def _teacher():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3),
        nn.BatchNorm2d(5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    return net.eval()


def test_reference_matches_published_hook_without_and_with_momentum():
    bn = _teacher()[1]
    x = torch.randn(6, 4, 5, 7)
    loss, mean, var = bn_stats_loss_reference(x, bn.running_mean, bn.running_var)
    torch.testing.assert_close(loss, _direct_bn_loss(x, bn))
    ema = (torch.randn(4), torch.rand(4))
    loss_m, _, _ = bn_stats_loss_reference(x, bn.running_mean, bn.running_var, ema[0], ema[1], 0.9)
    torch.testing.assert_close(loss_m, _direct_bn_loss(x, bn, ema, 0.9))
    # channels_last and bf16 inputs give the same statistics (fp32 accumulation)
    loss_cl, _, _ = bn_stats_loss_reference(
        x.contiguous(memory_format=torch.channels_last), bn.running_mean, bn.running_var
    )
    torch.testing.assert_close(loss_cl, loss)
    loss_bf, _, _ = bn_stats_loss_reference(x.bfloat16(), bn.running_mean, bn.running_var)
    assert loss_bf.dtype == torch.float32
    torch.testing.assert_close(loss_bf, loss, atol=0.05, rtol=0.02)


def test_reference_gradient_matches_autograd_of_direct_formula():
    bn = _teacher()[1]
    x1 = torch.randn(3, 4, 2, 5, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    bn_stats_loss_reference(x1, bn.running_mean, bn.running_var)[0].mul(2.5).backward()
    _direct_bn_loss(x2, bn).mul(2.5).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_reference_returns_detached_statistics_and_differentiates_the_blend():
    """The returned (mean, var) are detached (as the Triton kernel's); the loss still reaches x
    through the batch statistics inside the EMA blend."""
    bn = _teacher()[1]
    ema = (torch.randn(4), torch.rand(4) + 0.5)
    x1 = torch.randn(3, 4, 2, 5, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    loss, mean, var = bn_stats_loss_reference(x1, bn.running_mean, bn.running_var, ema[0], ema[1], 0.9)
    assert loss.requires_grad and not mean.requires_grad and not var.requires_grad
    torch.testing.assert_close(mean, x1.detach().mean([0, 2, 3]))
    loss.mul(1.5).backward()
    _direct_bn_loss(x2, bn, ema, 0.9).mul(1.5).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_hooks_resolve_the_backend_once(monkeypatch):
    monkeypatch.setenv("NAYER_KERNELS", "reference")
    assert BNStatsHooks(_teacher(), backend="auto").backend == "reference"
    assert BNStatsHooks(_teacher(), backend="reference").backend == "reference"
    with pytest.raises(ValueError, match="backend"):
        BNStatsHooks(_teacher(), backend="cuda")


def test_ema_update():
    first = update_ema(None, (torch.ones(3), 2 * torch.ones(3)), 0.9)
    torch.testing.assert_close(first[0], torch.ones(3))
    second = update_ema(first, (torch.zeros(3), torch.zeros(3)), 0.9)
    torch.testing.assert_close(second[0], 0.9 * torch.ones(3))
    torch.testing.assert_close(second[1], 1.8 * torch.ones(3))


def test_hooks_sum_layers_apply_first_multiplier_and_momentum():
    net = _teacher()
    hooks = BNStatsHooks(net, momentum=0.9, first_bn_multiplier=10.0)
    x = torch.randn(4, 3, 9, 9)
    net(x)  # outside active(): nothing computed
    with pytest.raises(RuntimeError):
        hooks.loss()
    with hooks.active():
        net(x)
    inputs = [net[0](x), net[3](net[2](net[1](net[0](x))))]
    expected = 10.0 * _direct_bn_loss(inputs[0], net[1]) + _direct_bn_loss(inputs[1], net[4])
    torch.testing.assert_close(hooks.loss(), expected)
    hooks.update_momentum()  # first batch: EMA = batch statistics
    y = torch.randn(4, 3, 9, 9)
    with hooks.active():
        net(y)
    ema0 = (inputs[0].mean([0, 2, 3]), inputs[0].var([0, 2, 3], unbiased=False))
    ema1 = (inputs[1].mean([0, 2, 3]), inputs[1].var([0, 2, 3], unbiased=False))
    in_y = [net[0](y), net[3](net[2](net[1](net[0](y))))]
    expected = 10.0 * _direct_bn_loss(in_y[0], net[1], ema0, 0.9) + _direct_bn_loss(in_y[1], net[4], ema1, 0.9)
    torch.testing.assert_close(hooks.loss(), expected)
    state = hooks.state_dict()
    other = BNStatsHooks(_teacher(), momentum=0.9)
    other.load_state_dict(state)
    torch.testing.assert_close(other.ema[1][1], ema1[1])


def test_hooks_need_batchnorm():
    with pytest.raises(ValueError, match="BatchNorm"):
        BNStatsHooks(nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_adversarial_mask():
    t = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    s = torch.tensor([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0], [0.5, 0.0, 0.2]])  # agree, disagree, agree
    pt, ps = F.softmax(t, 1), F.softmax(s, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1)
    expected = -(kl[0] + kl[2]) / 3  # disagreeing row counts as zero in the mean
    torch.testing.assert_close(adversarial_loss(s, t), expected)


def test_kd_loss_with_temperature():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    tau = 20.0
    pt, ps = F.softmax(t / tau, 1), F.softmax(s / tau, 1)
    expected = (pt * (pt.log() - ps.log())).sum(1).mean() * tau**2
    torch.testing.assert_close(kd_loss(s, t, tau), expected)
    assert kd_loss(t, t, tau).abs() < 1e-6


@pytest.mark.parametrize("shape, channels_last", [((6, 3, 5, 4), False), ((6, 3, 5, 4), True), ((7, 5), False)])
def test_batch_statistics_match_var_mean_and_autograd(shape, channels_last):
    """The closed-form backward of kernels.bn_stats.batch_statistics equals autograd through
    torch.var_mean, values and gradients, in float64 (gradcheck) and in float32."""
    from nayer_kernels.bn_stats import batch_statistics

    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dims = [0] + list(range(2, x.dim()))
    assert torch.autograd.gradcheck(batch_statistics, (x.clone().requires_grad_(),))
    gv, gm = torch.randn(shape[1], dtype=torch.float64), torch.randn(shape[1], dtype=torch.float64)
    grads = []
    for fn in (batch_statistics, lambda t: torch.var_mean(t, dim=dims, unbiased=False)):
        xf = x.float().requires_grad_()
        var, mean = fn(xf)
        assert var.dtype == mean.dtype == torch.float32 and var.shape == mean.shape == (shape[1],)
        ((var * gv.float()).sum() + (mean * gm.float()).sum()).backward()
        grads.append((var.detach(), mean.detach(), xf.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    half = x.to(torch.bfloat16).requires_grad_()
    var, _ = batch_statistics(half)
    assert var.dtype == torch.float32  # accumulated in fp32 whatever the input dtype
    var.sum().backward()
    assert half.grad.dtype == torch.bfloat16
