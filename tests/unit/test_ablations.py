"""NAYER's ablation switches (generator input, noisy layer, text encoder, template), the metrics of
the ablation study (diversity, convergence, LTE nearest classes) and benchmarks/ablations.py.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_ablations_runs.py."""

from __future__ import annotations

import pytest
import torch

from nayer_scale.config import ConfigError, NayerMethodConfig
from nayer_scale.lte import HashedBagOfWordsEncoder, build_text_encoder, load_or_build_lte
from nayer_scale.metrics import convergence_epoch, feature_diversity, lte_nearest_classes


def test_bad_switch_values_are_refused():
    with pytest.raises(ConfigError, match="synthesis.nayer.generator_input must be one of lte, noise"):
        NayerMethodConfig(generator_input="clip").validate()
    with pytest.raises(ConfigError, match="synthesis.nayer.noisy_layer"):
        NayerMethodConfig(noisy_layer="2-to-1").validate()


def test_feature_diversity_on_known_spread():
    torch.manual_seed(0)
    labels = torch.arange(4).repeat(8)
    same = torch.randn(4, 16)[labels]  # every image of a class identical
    assert feature_diversity(same, labels).item() == pytest.approx(0.0, abs=1e-6)
    centre = torch.randn(4, 16)[labels]
    small = centre + 0.1 * torch.randn(32, 16)
    large = centre + 1.0 * torch.randn(32, 16)
    assert 0 < feature_diversity(small, labels) < feature_diversity(large, labels)
    opposite = torch.cat([torch.ones(1, 4), -torch.ones(1, 4)])
    assert feature_diversity(opposite, torch.zeros(2, dtype=torch.long)).item() == pytest.approx(2.0)
    # images of different classes never count
    assert feature_diversity(torch.randn(3, 5), torch.arange(3)).item() == 0


def test_convergence_epoch():
    records = [{"epoch": 0, "synth_ce_min": 2.0}, {"epoch": 1, "synth_ce_min": 0.5}, {"epoch": 2, "synth_ce_min": 0.05}]
    assert convergence_epoch(records, 0.1) == 2 and convergence_epoch(records, 1.0) == 1
    assert convergence_epoch(records, 0.01) is None


def test_hashed_encoder_needs_no_weights(tmp_path):
    enc = build_text_encoder("hashed:64")
    assert isinstance(enc, HashedBagOfWordsEncoder) and enc.dim == 64
    prompts = ["a photo of a 3", "a photo of a 7", "a photo of a 3", "zebra"]
    e = enc.encode(prompts)
    assert e.shape == (4, 64) and torch.allclose(e.norm(dim=1), torch.ones(4))
    assert torch.equal(e[0], e[2]) and not torch.equal(e[0], e[1])  # deterministic, label-specific
    assert (e[0] @ e[1]) > 0.5 > (e[0] @ e[3])  # shared words -> similar
    assert torch.equal(HashedBagOfWordsEncoder(64).encode(prompts), e)  # same on every call / process
    lte = load_or_build_lte(["cat", "dog"], "hashed", "photo_index", tmp_path)
    assert lte.shape == (2, 512)
    with pytest.raises(ValueError, match="hashed"):
        build_text_encoder("hashed:big")


def test_lte_nearest_classes():
    lte = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    nn = lte_nearest_classes(lte, ["a", "b", "c", "d"], k=2)
    assert [n for n, _ in nn["a"]] == ["b", "c"] and nn["a"][0][1] == pytest.approx(0.9939, abs=1e-4)
    assert [n for n, _ in nn["d"]][0] == "c"
    with pytest.raises(ValueError):
        lte_nearest_classes(lte, ["a"], k=1)
