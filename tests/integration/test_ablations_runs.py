"""NAYER's ablation switches (generator input, noisy layer, text encoder, template), the metrics of
the ablation study (diversity, convergence, LTE nearest classes) and benchmarks/ablations.py.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_ablations.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, tiny_set_args
from nayer_scale.trainer import NayerTrainer

ROOT = Path(__file__).resolve().parents[2]


# (generator_input, noisy_layer) -> width of the generator's first layer (tiny config: noise_dim 32,
# MiniLM 384-d LTE, K = 10)
SWITCHES = [
    ("lte", "k_to_1", 32),
    ("lte", "one_to_one", 32),
    ("lte", "none", 384),
    ("noise", "none", 32),
    ("onehot", "none", 10),
    ("onehot", "k_to_1", 32),
    ("lte_cat_noise", "none", 768),
    ("lte_plus_noise", "none", 384),
]


@pytest.mark.parametrize("generator_input, noisy_layer, width", SWITCHES)
def test_every_switch_synthesises(make_cfg, generator_input, noisy_layer, width):
    trainer = NayerTrainer(
        make_cfg(
            "run", f"synthesis.nayer.generator_input={generator_input}", f"synthesis.nayer.noisy_layer={noisy_layer}"
        )
    )
    synth = trainer.synthesizer
    assert synth.generator.fc.in_features == width
    assert (synth.noisy is None) == (noisy_layer == "none")
    if noisy_layer == "one_to_one":
        assert synth.noisy.num_linears == 24  # one linear per sample of the 24-image batch
    assert (trainer.lte is None) == (generator_input in ("noise", "onehot"))  # no text encoder needed
    images, labels, losses = trainer.synthesize(epoch=0, batch_index=0)
    assert images.shape == (24, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert all(torch.isfinite(v) for v in losses.values())


def test_generator_inputs(make_cfg):
    labels = torch.arange(10).repeat(2)
    t = NayerTrainer(
        make_cfg("cat", "synthesis.nayer.generator_input=lte_cat_noise", "synthesis.nayer.noisy_layer=none")
    )
    v = t.synthesizer.generator_inputs(labels)
    assert torch.equal(v[:, :384], t.lte[labels]) and v[:, 384:].std() > 0.5  # [e_y, z]
    t = NayerTrainer(
        make_cfg(
            "sum",
            "synthesis.nayer.generator_input=lte_plus_noise",
            "synthesis.nayer.noise_beta=0.0",
            "synthesis.nayer.noisy_layer=none",
        )
    )
    assert torch.equal(t.synthesizer.generator_inputs(labels), t.lte[labels])  # beta = 0: e_y alone
    t = NayerTrainer(make_cfg("oh", "synthesis.nayer.generator_input=onehot"))
    assert torch.equal(t.synthesizer.generator_inputs(labels), torch.eye(10)[labels])


def test_noisy_layer_reinit_switch(make_cfg):
    for reinit in (True, False):
        t = NayerTrainer(make_cfg(f"reinit-{reinit}", f"synthesis.nayer.noisy_layer_reinit={reinit}"))
        t.synthesize(0, 0)
        after_first = t.synthesizer.noisy.weight.detach().clone()
        seen = []
        real = t.synthesizer.generator.forward
        t.synthesizer.generator.forward = lambda h: seen.append(t.synthesizer.noisy.weight.detach().clone()) or real(h)
        t.synthesize(0, 1)
        # without re-initialisation the second batch starts from where the first one ended
        assert torch.equal(seen[0], after_first) != reinit


def test_noisy_layer_without_batchnorm(make_cfg):
    t = NayerTrainer(make_cfg("run", "synthesis.nayer.noisy_layer_batchnorm=false"))
    assert isinstance(t.synthesizer.noisy.norm, torch.nn.Identity)
    t.synthesize(0, 0)


def test_trainer_diversity_of_images(make_cfg):
    t = NayerTrainer(make_cfg())
    labels = torch.arange(10).repeat(3)
    one = torch.rand(10, 1, 28, 28)[labels]

    def diversity(images):
        return t.probe_synthetic(images, labels, student=False)[0].item()

    assert diversity(one) == pytest.approx(0.0, abs=1e-5)
    noisy = one + 0.02 * torch.randn_like(one)
    spread = torch.rand(30, 1, 28, 28)
    assert diversity(noisy.clamp(0, 1)) < diversity(spread)
    # with the student: agreement counts over the batch; no class twice in a batch: no diversity
    _, agree, count = t.probe_synthetic(spread, labels, student=True)
    assert count == 30 and 0 <= agree.item() <= 30
    assert t.probe_synthetic(spread[:10], labels[:10], student=False)[0] is None


def test_run_writes_metrics_and_lte_neighbours(make_cfg):
    cfg = make_cfg()
    NayerTrainer(cfg).fit()
    run = Path(cfg.run.run_dir)
    neighbours = json.loads((run / "lte_neighbours.json").read_text())
    assert len(neighbours) == 10 and all(len(v) == 3 for v in neighbours.values())
    records = [json.loads(x) for x in open(run / "metrics.jsonl")]
    assert all(r["synth_diversity"] > 0 and r["synth_ce_min"] > 0 for r in records)


def test_ablation_study_writes_its_tables_and_figure(tmp_path, teacher_file, fake_test_split, lte_cache):
    out = tmp_path / "res" / "abl"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.ablations",
        "--variants",
        "lte",
        "nl_k_to_1",
        "encoder_hashed_index",
        "--epochs",
        "2",
        "--launcher",
        "python",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(out),
        *tiny_set_args(teacher_file, fake_test_split, lte_cache),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )  # benchmarks from ROOT
    assert done.returncode == 0, done.stderr[-3000:]
    md = out.with_suffix(".md").read_text()
    assert "| LTE |" in md and "| NL K-to-1 (NAYER) |" in md and "hashed bag of words" in md
    assert "Epochs to CE < 0.1" in md and "Nearest classes" in md and "python -m benchmarks.ablations" in md
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["variant"] for r in rows] == ["lte", "nl_k_to_1", "encoder_hashed_index"]
    assert all(0 <= float(r["student_top1"]) <= 1 and float(r["diversity"]) >= 0 for r in rows)
    png = (out.parent / "abl_lte.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10000
