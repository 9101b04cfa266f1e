"""SIGTERM / SIGUSR1: every process checkpoints at the next safe point (mid-synthesis, mid-
distillation or the end of an epoch) and fit() returns; resuming gives bit-identical results.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_preemption.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_bit_identical, tiny_config
from nayer_scale.trainer import NayerTrainer

# 2 synthesis batches and 4 student steps per epoch: safe points inside both phases
SAFE_POINTS = ("synthesis.batches_per_epoch=2", "distill.steps_per_epoch=4", "run.safe_point_every_steps=1")


@pytest.fixture
def make_cfg(make_cfg):
    """conftest's ``make_cfg`` with the safe points of this file."""
    return lambda name, *overrides: make_cfg(name, *SAFE_POINTS, *overrides)


@pytest.fixture(scope="module")
def straight_students(tmp_path_factory, teacher_file, fake_test_split, lte_cache):
    """Uninterrupted runs, keyed by the signal-free config name."""
    cfg = tiny_config(
        tmp_path_factory.mktemp("straight") / "run", teacher_file, fake_test_split, lte_cache, *SAFE_POINTS
    )
    summary = NayerTrainer(cfg).fit()
    return summary, load_file(f"{cfg.run.run_dir}/student.safetensors"), cfg


def _signal_on_call(monkeypatch, method: str, call: int, signum: int):
    """Send ``signum`` to this process during the ``call``-th call of NayerTrainer.<method>."""
    real = getattr(NayerTrainer, method)
    calls = {"n": 0}

    def wrapped(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(NayerTrainer, method, wrapped)
    return lambda: monkeypatch.setattr(NayerTrainer, method, real)


@pytest.mark.parametrize(
    "method, call, signum, expected",
    [
        # epoch 0 (warm-up) has 1 synthesis batch, epochs 1-2 have 2: the 2nd call is epoch 1, batch 0,
        # whose safe point follows it; the 3rd is the epoch's last batch: the next safe point is after
        # the first student step
        ("synthesize", 2, signal.SIGTERM, "epoch-0001-b0001-s00000000"),
        ("synthesize", 3, signal.SIGUSR1, "epoch-0001-b0002-s00000001"),
        ("probe_synthetic", 1, signal.SIGTERM, "epoch-0000"),  # warm-up epoch 0: its end is the next safe point
    ],
)
def test_signal_checkpoints_at_next_safe_point_and_resume_is_exact(
    make_cfg, monkeypatch, straight_students, method, call, signum, expected
):
    reference, straight, _ = straight_students
    cfg = make_cfg(f"stopped-{method}-{call}")
    restore = _signal_on_call(monkeypatch, method, call, signum)
    handler_before = signal.getsignal(signum)
    result = NayerTrainer(cfg).fit()
    restore()
    assert signal.getsignal(signum) == handler_before  # fit restores the handlers it replaced
    assert result["preempted"] and Path(result["checkpoint"]).name == expected
    ckpt = Path(cfg.run.run_dir) / "checkpoints"
    assert (ckpt / "latest").read_text() == expected
    assert not (Path(cfg.run.run_dir) / "summary.json").exists()  # not complete

    cfg.run.resume = True
    resumed = NayerTrainer(cfg)
    summary = resumed.fit()
    assert summary["memory_size"] == reference["memory_size"]
    after = load_file(f"{cfg.run.run_dir}/student.safetensors")
    assert_bit_identical(after, straight)
    lines = [json.loads(x) for x in open(f"{cfg.run.run_dir}/metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert summary["student_top1"] == reference["student_top1"]
    # time accounting spans both sessions, the phase that was interrupted included
    phases = sum(summary[f"{k}_s"] for k in ("setup", "synthesis", "io", "distillation", "evaluation", "checkpoint"))
    assert abs(phases - summary["wall_s"]) <= 0.03 * summary["wall_s"] + 0.3, (phases, summary["wall_s"])


def test_signal_during_distillation_stops_after_that_step(make_cfg, monkeypatch, straight_students):
    reference, straight, _ = straight_students
    cfg = make_cfg("stopped-distill")
    # the 2nd memory-bank batch handed to the student in epoch 1 = student step 2 of epoch 1
    # (Staging.deliver runs in the training thread once per consumed batch, whatever the prefetch depth)
    from nayer_scale.memory.staging import Staging

    real_deliver, calls = Staging.deliver, {"n": 0}

    def deliver(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real_deliver(self, *args, **kwargs)

    monkeypatch.setattr(Staging, "deliver", deliver)
    result = NayerTrainer(cfg).fit()
    monkeypatch.setattr(Staging, "deliver", real_deliver)
    assert Path(result["checkpoint"]).name == "epoch-0001-b0002-s00000002"
    state = json.loads((Path(result["checkpoint"]) / "meta.json").read_text())
    assert state["position"]["distill_steps"] == 2 and state["position"]["synthesis_batches"] == 2
    cfg.run.resume = True
    resumed = NayerTrainer(cfg)
    assert resumed.start_epoch == 1 and resumed.progress.distill_steps == 2
    summary = resumed.fit()
    phases = sum(summary[f"{k}_s"] for k in ("setup", "synthesis", "io", "distillation", "evaluation", "checkpoint"))
    assert abs(phases - summary["wall_s"]) <= 0.03 * summary["wall_s"] + 0.3, (phases, summary["wall_s"])
    after = load_file(f"{cfg.run.run_dir}/student.safetensors")
    assert_bit_identical(after, straight)


def test_shared_generator_starts_identical_and_averages_its_gradients(make_cfg):
    """synthesis.shared_generator: every process builds the same initial generator (seeded by run
    seed and epoch, global RNG untouched) and hands each step's generator gradients to the
    all-reduce; without it each process's generator comes from its own RNG stream."""
    import dataclasses

    from nayer_scale.synthesis import NayerSynthesizer

    trainer = NayerTrainer(make_cfg("shared"))
    calls = []
    generators = {}
    for shared in (True, False):
        for rank in (0, 1):
            torch.manual_seed(100 + rank)  # each process's own global RNG stream
            ctx = dataclasses.replace(
                trainer.synthesizer.ctx, rank=rank, all_reduce=(lambda ts: calls.append(len(ts))) if shared else None
            )
            generators[shared, rank] = NayerSynthesizer(ctx, trainer.lte, trainer.num_classes)
    same = [
        torch.equal(a, b)
        for a, b in zip(
            generators[True, 0].generator.state_dict().values(), generators[True, 1].generator.state_dict().values()
        )
    ]
    differ = [
        torch.equal(a, b)
        for a, b in zip(generators[False, 0].generator.parameters(), generators[False, 1].generator.parameters())
        if a.dim() > 1
    ]  # random weights; BatchNorm starts at 1 / 0 everywhere
    assert all(same) and not any(differ)
    labels = trainer.synthesis_labels(1, 0)
    generators[True, 0].synthesize(labels, 1, 0, None)
    steps, n_params = trainer.cfg.synthesis.num_generator_steps, len(list(generators[True, 0].generator.parameters()))
    assert calls == [n_params] * steps
