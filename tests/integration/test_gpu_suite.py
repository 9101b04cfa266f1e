"""python -m benchmarks.gpu_suite, the prepared GPU suite, on CPU: its dry run (every step at toy sizes,
Triton interpreter) writes the files the device tool brings back with every step reported, a step
that hangs is killed at its budget while the later steps still run, a carried MiniLM LTE cache is
used without the text encoder, the projected recipes have the presets' batch and step counts, and
--collect files a finished run under benchmarks/results/gpu/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _suite():
    """The package's parts the tests read: spec (steps, files), workers.recipe, records.slug,
    orchestrator.collect / device_call."""
    from benchmarks.gpu_suite import orchestrator, records, spec, workers

    return orchestrator, records, spec, workers


def _fake_minilm_cache(folder: Path, class_key: str) -> torch.Tensor:
    """A pool file exactly as load_or_build_lte writes it for encoder "minilm" (random values), so
    the suite's carried-cache path is tested without loading the text model."""
    from safetensors.torch import save_file

    from nayer_scale.lte import build_prompts, get_class_names, lte_cache_key

    names = get_class_names(class_key)
    canonical = lambda obj: json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    lte = torch.nn.functional.normalize(torch.randn(len(names), 384, generator=torch.Generator().manual_seed(0)), dim=1)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"encoder": "minilm", "template": "photo_of", "class_names": canonical(names),
            "prompts": canonical(build_prompts(names, "photo_of")), "dim": "384", "created_by": "nayer-scale"}
    path = folder / f"lte-{lte_cache_key('minilm', 'photo_of', names)}.safetensors"
    save_file({"lte": lte}, str(path), metadata=meta)
    return lte


def _run(args: list[str], timeout: int = 600, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("OUT", "NAYER_KERNELS", "TRITON_INTERPRET")}
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", *args], capture_output=True, text=True,
                          timeout=timeout, env={**base, **env}, cwd=ROOT)


@pytest.mark.slow
def test_dry_run_reports_every_step(tmp_path):
    carry, out = tmp_path / "carry", tmp_path / "out"
    _fake_minilm_cache(carry / "lte", "cifar10")
    proc = _run(["--dry-run", "--out", str(out), "--commit", COMMIT, "--dirty", "--carry", str(carry)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    spec = _suite()[2]

    # What the device tool brings back: at most 8 plain files, directly in the folder.
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(spec.FILES) and all((out / n).is_file() for n in names)
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["steps"]] == spec.STEP_NAMES
    assert {s["name"]: s["status"] for s in results["steps"]} == {n: "ok" for n in spec.STEP_NAMES}
    assert results["meta"]["commit"] == COMMIT + "+dirty" and results["meta"]["dry_run"]
    records = results["records"]
    assert records == [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]

    summary = (out / "summary.md").read_text()
    assert COMMIT + "+dirty" in summary and results["meta"]["device"] in summary and "DRY RUN" in summary
    for i, (name, _, title) in enumerate(spec.STEPS):
        assert f"## {i + 1}. {title} [{name}: ok]" in summary

    kinds = lambda kind: [r for r in records if r["kind"] == kind]  # noqa: E731
    assert kinds("env")[0]["commit"] == COMMIT + "+dirty" and kinds("env")[0]["torch"] == torch.__version__
    tests = kinds("pytest")
    assert tests[0]["counts"].get("skipped", 0) > 0 and tests[0]["rc"] == 0  # -m gpu: all skipped on CPU
    assert tests[1]["counts"].get("passed", 0) >= 2 and not tests[1]["counts"].get("failed")
    rng = kinds("rng_compare")[0]["inits"]
    assert set(rng) == {"normal", "kaiming_uniform"} and all(v["max_abs_diff"] == 0 for v in rng.values())
    kernel_rows = kinds("kernel_row")
    assert {r["provider"] for r in kernel_rows} == {"triton", "torch", "torch_loop"}
    assert (out / "kernels.csv").read_text().count("\n") == len(kernel_rows) + 1
    assert all(r["commit"] == COMMIT + "+dirty" for r in kernel_rows)

    cifar = {(r["method"], r["kernels"]): r for r in kinds("cifar_condition")}
    assert set(cifar) == {("nayer", "triton"), ("deepinversion", "reference"), ("fast", "reference")}
    for r in cifar.values():
        assert r["projected_hours"] == pytest.approx(r["projected_synthesis_hours"] + r["projected_student_hours"])
        expected = (r["recipe"]["synthesis_batches_warmup"] * (r["s_per_warmup_batch"] or r["s_per_batch"])
                    + r["recipe"]["synthesis_batches"] * r["s_per_batch"]) / 3600
        assert r["projected_synthesis_hours"] == pytest.approx(expected) and expected > 0
        assert r["student_images_per_s"] > 0 and r["paper_a100_hours"] > 0
    assert cifar[("nayer", "triton")]["lte_from_carried_cache"] is True  # the encoder was never built
    assert cifar[("nayer", "triton")]["lte"] == "minilm (carried cache)"
    assert cifar[("deepinversion", "reference")]["recipe"]["steps_per_batch"] == 2000

    imagenet = kinds("imagenet_condition")
    assert [r["condition"] for r in imagenet] == ["fp32"] and imagenet[0]["projected_hours_per_process"] > 0
    assert {r["cache"] for r in kinds("memory_sample")} == {"device", "cpu", "none"}
    assert all(r["images_per_s"] > 0 for r in kinds("memory_sample"))
    assert {r["cache"] for r in kinds("memory_batches")} == {"device", "node", "none"}  # the prefetching path


@pytest.mark.slow
def test_a_hanging_step_is_killed_and_later_steps_still_run(tmp_path):
    out = tmp_path / "out"
    proc = _run(["--dry-run", "--out", str(out), "--commit", COMMIT, "--carry", str(tmp_path / "none"),
                 "--steps", "kernels", "memory_bank", "--budget", "kernels=6"], NAYER_GPU_SUITE_TEST_HANG="kernels")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # not every step ok
    steps = {s["name"]: s for s in json.loads((out / "results.json").read_text())["steps"]}
    assert steps["kernels"]["status"] == "timeout" and steps["kernels"]["wall_s"] < 15
    assert steps["memory_bank"]["status"] == "ok" and steps["env_tests"]["status"] == "not selected"
    assert "[kernels: timeout]" in (out / "summary.md").read_text()


def test_recipes_and_collect(tmp_path, monkeypatch):
    orchestrator, records, _, workers = _suite()
    nayer, di, fast = (workers.recipe(p) for p in ("cifar10", "cifar10_deepinversion", "cifar10_fast"))
    # NAYER E=100 after 20 warm-up epochs of 10 batches, 2 batches and 400 student steps per epoch.
    assert (nayer["synthesis_batches_warmup"], nayer["synthesis_batches"], nayer["steps_per_batch"],
            nayer["student_steps"]) == (200, 200, 30, 40000)
    assert (di["synthesis_batches_warmup"], di["synthesis_batches"], di["steps_per_batch"]) == (0, 120, 2000)
    assert (fast["synthesis_batches"], fast["steps_per_batch"]) == (200, 5)
    assert records.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"

    came_back = tmp_path / "files_at"
    came_back.mkdir()
    meta = {"date": "2026-12-01", "device": "NVIDIA H100 80GB HBM3", "dry_run": False}
    (came_back / "results.json").write_text(json.dumps({"meta": meta, "steps": [], "records": []}))
    (came_back / "summary.md").write_text("# GPU suite\n")
    first = orchestrator.collect(came_back, tmp_path / "gpu")
    second = orchestrator.collect(came_back, tmp_path / "gpu")
    assert first.name == "2026-12-01-nvidia-h100-80gb-hbm3" and second.name == first.name + "-2"
    assert sorted(p.name for p in first.iterdir()) == ["results.json", "summary.md"]
    with pytest.raises(SystemExit, match="results.json"):
        orchestrator.collect(tmp_path / "empty", tmp_path / "gpu")
    # --print-command says what to prepare first
    monkeypatch.setattr(orchestrator, "DEFAULT_CARRY", tmp_path / "no_carry")
    with pytest.raises(SystemExit, match="prepare_gpu_suite.sh"):
        orchestrator.device_call()
