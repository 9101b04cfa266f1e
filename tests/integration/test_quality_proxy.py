"""The data-free quality proxy: student-teacher agreement on held-out synthesis batches made without
the adversarial term. It must move with the student's real accuracy (here on the real Fashion-MNIST
test split, with the shipped teacher), which the per-epoch agreement on the adversarial batches
does not have to do."""

from __future__ import annotations

import pytest

from nayer_scale.data import find_eval_data
from nayer_scale.recipes import get_preset
from nayer_scale.trainer import NayerTrainer


def test_heldout_agreement_rises_with_real_top1(tmp_path, lte_cache, one_thread):
    try:
        find_eval_data("fashion_mnist", None)
    except FileNotFoundError as err:
        pytest.fail(f"the real Fashion-MNIST test split is needed (bash scripts/get_fashion_mnist.sh): {err}")
    cfg = get_preset("fashion_mnist")  # the shipped ResNet-20 teacher, real test split
    s = cfg.synthesis
    s.batch_size, s.num_generator_steps, s.warmup_batches_per_epoch = 100, 10, 2
    cfg.distill.steps_per_epoch = 200
    cfg.lte.cache_dir = str(lte_cache)
    cfg.run.run_dir, cfg.run.epochs, cfg.run.progress = str(tmp_path / "run"), 3, False
    trainer = NayerTrainer(cfg)
    before = (trainer.heldout_agreement(), trainer.evaluate(trainer.student))
    summary = trainer.fit()
    after = (summary["student_agreement"], summary["student_top1"])
    assert "without the adversarial term" in summary["student_agreement_source"]
    assert after[1] > before[1] + 0.1, (before, after)  # the student learned
    assert after[0] > before[0] + 0.2, (before, after)  # and the proxy saw it
