"""CIFAR test-split loading (python-version pickles) and the evaluation-set checks of the trainer.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_data.py."""

from __future__ import annotations

import pytest

from conftest import tiny_config
from helpers.data import write_cifar
from nayer_scale.trainer import NayerTrainer


def test_eval_set_that_does_not_fit_the_teacher_is_refused(tmp_path, teacher_file, fake_test_split, lte_cache):
    write_cifar(tmp_path / "cifar", "cifar10")
    cfg = tiny_config(
        tmp_path / "run",
        teacher_file,
        fake_test_split,
        lte_cache,
        "eval.dataset=cifar10",
        f"eval.root={tmp_path / 'cifar'}",
    )
    with pytest.raises(ValueError, match="shape"):  # 3x32x32 test images for a 1x28x28 teacher
        NayerTrainer(cfg)
    assert not (tmp_path / "run" / "memory").exists()
