"""Noisy layer, generator and augmentation against direct computations."""

import pytest
import torch
from torch import nn

from nayer_scale.augment import BatchAugment
from nayer_scale.synthesis import Generator, NoisyLayer


def test_reinit_changes_linears_and_keeps_batchnorm():
    torch.manual_seed(0)
    layer = NoisyLayer(text_dim=8, noise_dim=16, num_classes=4, batch_size=10)
    layer.train()
    layer(torch.randn(10, 8))  # moves the BatchNorm1d running statistics
    layer.norm.weight.data.fill_(1.5)
    bn_before = {k: v.clone() for k, v in layer.norm.state_dict().items()}
    w_before = layer.weight.detach().clone()
    layer.bias.data.fill_(3.0)
    layer.reinitialize(torch.Generator().manual_seed(1))
    assert not torch.equal(layer.weight, w_before)
    assert torch.count_nonzero(layer.bias) == 0  # zero bias, as published
    for k, v in layer.norm.state_dict().items():
        assert torch.equal(v, bn_before[k]), k
    # N(0, 1) weights (published init)
    assert abs(layer.weight.mean().item()) < 0.1 and abs(layer.weight.std().item() - 1) < 0.1


def test_reinit_is_deterministic_by_seed():
    layer = NoisyLayer(8, 16, 4, 10)
    layer.reinitialize(torch.Generator().manual_seed(5))
    first = layer.weight.detach().clone()
    layer.reinitialize(torch.Generator().manual_seed(5))
    assert torch.equal(first, layer.weight)
    layer.reinitialize(torch.Generator().manual_seed(6))
    assert not torch.equal(first, layer.weight)


def test_kaiming_uniform_init_bounds():
    layer = NoisyLayer(64, 32, 4, 8, init="kaiming_uniform")
    assert layer.weight.abs().max() <= 1 / 8 + 1e-6


def test_k_to_1_chunking_matches_per_copy_linears():
    torch.manual_seed(0)
    k, batch = 4, 10  # 3 linears: rows 0-3, 4-7, 8-9
    layer = NoisyLayer(text_dim=6, noise_dim=5, num_classes=k, batch_size=batch).eval()
    layer.bias.data.normal_()
    assert layer.num_linears == 3
    e = torch.randn(batch, 6)
    out = layer(e)
    h = layer.norm(e)
    for i in range(3):
        rows = slice(i * k, min((i + 1) * k, batch))
        expected = nn.functional.linear(h[rows], layer.weight[i], layer.bias[i])
        torch.testing.assert_close(out[rows], expected)


def test_noisy_layer_without_batchnorm_and_bad_batch():
    layer = NoisyLayer(6, 5, 4, 8, use_batchnorm=False)
    assert isinstance(layer.norm, nn.Identity)
    with pytest.raises(ValueError, match="noisy linears"):
        layer(torch.randn(9, 6))
    with pytest.raises(ValueError, match="init"):
        NoisyLayer(6, 5, 4, 8, init="xavier")


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_generator_shapes_and_range(size, channels):
    gen = Generator(noise_dim=20, image_size=size, channels=channels, width=8)
    x = gen(torch.randn(3, 20))
    assert x.shape == (3, channels, size, size)
    assert x.min() >= 0 and x.max() <= 1


def test_generator_rejects_bad_size():
    with pytest.raises(ValueError, match="divisible"):
        Generator(20, 30, 3)


def test_augment_crop_and_flip_per_sample():
    aug = BatchAugment(mean=[0.5], std=[0.25], padding=2, flip=True)
    x = torch.rand(64, 1, 6, 6, requires_grad=True)
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    raw = out * 0.25 + 0.5  # undo normalisation
    for i in range(64):  # each output is a shifted (maybe flipped) window of the zero-padded input
        padded = nn.functional.pad(x[i, 0].detach(), (2, 2, 2, 2))
        windows = [padded[r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        windows += [w.flip(1) for w in windows]
        assert any(torch.allclose(raw[i, 0].detach(), w, atol=1e-6) for w in windows)
    out.sum().backward()  # differentiable towards the generator
    assert x.grad is not None
    offsets = {tuple(raw[i, 0].detach().flatten()[:3].tolist()) for i in range(64)}
    assert len(offsets) > 8  # per-sample randomness, not one crop for the batch


def test_augment_without_crop_or_flip_is_normalisation():
    aug = BatchAugment(mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5], padding=0, flip=False)
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5
    torch.testing.assert_close(aug(x), expected)
