"""The Hugging Face ecosystem (issue 15): evaluation sets through ``datasets`` (``eval.dataset=hf``) and
teachers from ``transformers`` (``teacher.arch=hf:...``); the export of run artifacts as hub folders
(``python -m nayer_scale.export``) is tested in ``tests/unit/test_export.py``. Everything is built locally:
nothing is read from the hub.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_hf.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")  # declared in the "hf" extra (part of "dev")

from helpers.hf import fm_saved, fm_split, hf_teacher_dir  # noqa: E402, F401 (fixtures, found by name)

N_IMAGES = 200


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path_factory, monkeypatch):
    """Arrow caches of the parquet / imagefolder builders go to a temporary folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def _hf_config(run_dir: Path, teacher_dir: Path, lte_cache: Path, eval_path: Path, **teacher):
    from conftest import tiny_config

    cfg = tiny_config(run_dir, Path("unused"), Path("unused"), lte_cache)
    cfg.teacher.arch, cfg.teacher.weights = f"hf:{teacher_dir}", ""
    cfg.teacher.class_names = "fashion_mnist"
    for key, value in teacher.items():
        setattr(cfg.teacher, key, value)
    cfg.eval.dataset, cfg.eval.hf_path, cfg.eval.num_workers, cfg.eval.batch_size = "hf", str(eval_path), 0, 100
    return cfg


def test_distil_a_few_steps_from_an_hf_teacher_and_evaluate_on_an_hf_set(
    tmp_path, hf_teacher_dir, fm_saved, lte_cache, one_thread
):
    from nayer_scale.trainer import NayerTrainer

    cfg = _hf_config(tmp_path / "run", hf_teacher_dir, lte_cache, fm_saved)
    cfg.run.epochs, cfg.run.warmup_epochs = 2, 1
    summary = NayerTrainer(cfg).fit()
    assert summary["eval_images"] == N_IMAGES and 0 <= summary["student_top1"] <= 1
    assert summary["teacher_top1"] is not None
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["teacher"]["class_names"] == "id2label" and saved["teacher"]["weights"] == ""
    assert saved["teacher"]["arch"] == f"hf:{hf_teacher_dir}"
