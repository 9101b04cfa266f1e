"""python -m benchmarks.gpu_suite, the prepared GPU suite, on CPU: its dry run (every step at toy sizes,
Triton interpreter) writes the files the device tool brings back with every step reported in the
budgeted order, every timed number with its median / min / max and host time, the profiler share
table and the projection columns; the carried MiniLM LTE cache and Fashion-MNIST test split are
used; a step that hangs is killed at its budget while the later steps still run; the per-test
budget plugin fails a slow test and goes on; the projected recipes have the presets' batch and
step counts, and --collect files a finished run under benchmarks/results/gpu/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_idx_split

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
    meta = {
        "encoder": "minilm",
        "template": "photo_of",
        "class_names": canonical(names),
        "prompts": canonical(build_prompts(names, "photo_of")),
        "dim": "384",
        "created_by": "nayer-scale",
    }
    path = folder / f"lte-{lte_cache_key('minilm', 'photo_of', names)}.safetensors"
    save_file({"lte": lte}, str(path), metadata=meta)
    return lte


def _run(args: list[str], timeout: int = 600, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("OUT", "NAYER_KERNELS", "TRITON_INTERPRET")}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_suite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **env},
        cwd=ROOT,
    )


STEP_ORDER = ["env_tests", "kernels", "fashion_mnist", "cifar10", "imagenet", "memory_bank", "compile"]


def _carry_fashion_split(folder: Path) -> bool:
    """The real Fashion-MNIST test split copied into the carry folder as prepare_gpu_suite.sh does;
    a 120-image fake one where this machine has none. Returns whether it is the real one."""
    from nayer_scale.data import find_fashion_mnist

    folder.mkdir(parents=True, exist_ok=True)
    try:
        paths = find_fashion_mnist("test")
    except FileNotFoundError:
        write_idx_split(folder, "test", 120)
        return False
    for path in paths:
        (folder / path.name).write_bytes(path.read_bytes())
    return True


def test_budgets_fit_twice_in_a_lease():
    spec = _suite()[2]
    assert spec.STEP_NAMES == STEP_ORDER  # torch.compile last
    assert sum(b for _, b, _ in spec.STEPS) <= spec.TOTAL_BUDGET_S <= 420  # 2 x 7 min within a 15-min lease
    assert spec.HARD_CAP_STEPS == ("compile",) and spec.DEVICE_TIMEOUT_S < 900 / 2 + 60


def _assert_spread(stats: dict, repeats: int = 3) -> None:
    assert stats["repeats"] >= repeats and 0 < stats["min_s"] <= stats["median_s"] <= stats["max_s"]


def _check_tests_and_kernels(records: list[dict], out: Path) -> None:
    kinds = lambda kind: [r for r in records if r["kind"] == kind]  # noqa: E731
    tests = kinds("pytest")
    assert tests[0]["counts"].get("skipped", 0) > 0 and tests[0]["rc"] == 0  # -m gpu: all skipped on CPU
    assert tests[1]["counts"].get("passed", 0) >= 2 and not tests[1]["counts"].get("failed")
    assert all(t["per_test_budget_s"] > 0 and t["slowest"] and "pytest_budget" in t["command"] for t in tests)
    rng = kinds("rng_compare")[0]["inits"]
    assert set(rng) == {"normal", "kaiming_uniform"} and all(v["max_abs_diff"] == 0 for v in rng.values())
    rows = [r for r in kinds("kernel_row") if r["step"] == "kernels"]
    assert {r["provider"] for r in rows} == {"triton", "torch", "torch_loop", "var_mean"}
    assert [g for g in dict.fromkeys(r["group"] for r in rows)] == [
        "smoke/channels_last",
        "smoke/nchw",
        "noisy_reinit",
        "backward_only",
    ]
    assert {s["providers"][0] for s in kinds("kernel_skip")} == {"batch_norm_stats"}  # CUDA only
    for r in rows:  # host-inclusive median / min / max beside the (GPU-only) do_bench times
        assert 0 < r["host_min_ms"] <= r["host_median_ms"] <= r["host_max_ms"] and r["host_reps"] >= 3
        assert r["device_median_ms"] is None and r["median_ms"] == r["host_median_ms"]
    compiled = [r for r in kinds("kernel_row") if r["step"] == "compile"]
    assert compiled and {r["provider"] for r in compiled} == {"compile"}
    assert (out / "kernels.csv").read_text().count("\n") == len(rows) + len(compiled) + 1
    assert all(r["commit"] == COMMIT + "+dirty" for r in rows)


def _check_fashion(records: list[dict], real_split: bool) -> None:
    fashion = [r for r in records if r["kind"] == "fashion_condition"]
    assert [r["label"] for r in fashion] == ["fashion_mnist/reference", "fashion_mnist/auto"]
    for r in fashion:  # the real fit(): summary.json's phases and top-1 on the carried test split
        assert r["fit_wall_s"] > 0 and r["summary"]["wall_s"] > 0 and "Fashion-MNIST test split carried" in r["data"]
        assert all(r["summary"][f"{k}_s"] >= 0 for k in ("synthesis", "distillation", "evaluation"))
        assert r["summary"]["student_top1"] is not None
        if real_split:  # the shipped teacher on the real test split
            assert r["summary"]["teacher_top1"] > 0.85 and r["summary"]["eval_images"] == 10000
    projected = fashion[0]
    _assert_spread(projected["batch_s"]), _assert_spread(projected["student_step_s"])
    assert projected["projected_hours_min"] <= projected["projected_hours"] <= projected["projected_hours_max"]
    assert "projected_hours" not in fashion[1]


def _check_cifar_imagenet(records: list[dict]) -> None:
    cifar = {(r["method"], r["kernels"]): r for r in records if r["kind"] == "cifar_condition"}
    assert set(cifar) == {("nayer", "triton"), ("deepinversion", "reference"), ("fast", "reference")}
    for r in cifar.values():
        _assert_spread(r["batch_s"]), _assert_spread(r["student_step_s"])
        assert r["projected_hours"] == pytest.approx(r["projected_synthesis_hours"] + r["projected_student_hours"])
        expected = (
            r["recipe"]["synthesis_batches_warmup"] * (r["s_per_warmup_batch"] or r["s_per_batch"])
            + r["recipe"]["synthesis_batches"] * r["s_per_batch"]
        ) / 3600
        assert r["projected_synthesis_hours"] == pytest.approx(expected) and expected > 0
        assert r["projected_hours_min"] <= r["projected_hours"] <= r["projected_hours_max"]
        assert r["student_images_per_s"] > 0 and r["paper_a100_hours"] > 0 and r["recipe_source"]
    nayer = cifar[("nayer", "triton")]
    assert nayer["lte_from_carried_cache"] is True and nayer["lte"] == "minilm (carried cache)"  # no encoder built
    share = nayer["profile"]["rows"]  # one synthesis batch under torch.profiler
    assert share["bn_stats_loss forward"]["calls"] > 0 and share["noisy re-init"]["calls"] == 1
    forward, both = share["bn_stats_loss forward"], share["bn_stats_loss (forward + backward)"]
    assert 0 < forward["cpu_share"] <= both["cpu_share"] <= 1 and both["calls"] > forward["calls"]  # + backward
    assert 0 < share["noisy re-init"]["cpu_share"] < 1 and nayer["profile"]["batch_cuda_ms"] is None  # CPU only
    di = cifar[("deepinversion", "reference")]["recipe"]
    assert (di["steps_per_batch"], di["synthesis_batches"]) == (2000, 120)  # DeepInversion's 2k iterations
    assert cifar[("fast", "reference")]["profile"] is None
    imagenet = [r for r in records if r["kind"] == "imagenet_condition"]
    assert [r["condition"] for r in imagenet] == ["fp32/reference"] and imagenet[0]["projected_hours_per_process"] > 0
    _assert_spread(imagenet[0]["batch_s"])
    samples = [r for r in records if r["kind"] == "memory_sample"]
    assert {r["cache"] for r in samples} == {"device", "cpu", "none"} and all(r["images_per_s"] > 0 for r in samples)
    assert {r["cache"] for r in records if r["kind"] == "memory_batches"} == {"device", "node", "none"}


@pytest.mark.slow
def test_dry_run_reports_every_step(tmp_path):
    carry, out = tmp_path / "carry", tmp_path / "out"
    _fake_minilm_cache(carry / "lte", "cifar10")
    real_split = _carry_fashion_split(carry / "fashion-mnist")
    proc = _run(["--dry-run", "--out", str(out), "--commit", COMMIT, "--dirty", "--carry", str(carry)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    spec = _suite()[2]

    # What the device tool brings back: at most 8 plain files, directly in the folder.
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(spec.FILES) and all((out / n).is_file() for n in names)
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["steps"]] == STEP_ORDER
    assert {s["name"]: s["status"] for s in results["steps"]} == {n: "ok" for n in STEP_ORDER}
    steps = {s["name"]: s for s in results["steps"]}
    assert steps["compile"]["allowed_s"] == steps["compile"]["budget_s"]  # a hard cap: no left-over time
    assert steps["kernels"]["allowed_s"] > steps["kernels"]["budget_s"]  # the others get it
    assert results["meta"]["commit"] == COMMIT + "+dirty" and results["meta"]["dry_run"]
    records = results["records"]
    assert records == [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["step"] for r in records if r["kind"] == "step_end"} == set(STEP_ORDER)  # every step ran to its end

    summary = (out / "summary.md").read_text()
    assert COMMIT + "+dirty" in summary and results["meta"]["device"] in summary and "DRY RUN" in summary
    for i, (name, _, title) in enumerate(spec.STEPS):
        assert f"## {i + 1}. {title} [{name}: ok]" in summary
    for text in (
        "host ms",
        "median (min-max)",
        "torch.profiler share of one synthesis batch",
        "CPU share",
        "PROJECTIONS on this project's code",
        "paper A100 h (Table 2)",
        "proj. h min-max",
        "How far a projection can be trusted",
        "measured fit wall s",
        "per-test budget",
    ):
        assert text in summary, text
    _check_tests_and_kernels(records, out)
    _check_fashion(records, real_split)
    _check_cifar_imagenet(records)


def test_per_test_budget_fails_a_slow_test_and_goes_on(tmp_path):
    (tmp_path / "test_slow.py").write_text(
        "import time\n\ndef test_slow():\n    time.sleep(30)\n\ndef test_after():\n    pass\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "-p",
            "benchmarks.gpu_suite.pytest_budget",
            "--per-test-budget=0.5",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=25,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert "1 failed, 1 passed" in proc.stdout and "TestBudgetExceeded" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.slow
def test_a_hanging_step_is_killed_and_later_steps_still_run(tmp_path):
    out = tmp_path / "out"
    proc = _run(
        [
            "--dry-run",
            "--out",
            str(out),
            "--commit",
            COMMIT,
            "--carry",
            str(tmp_path / "none"),
            "--steps",
            "kernels",
            "memory_bank",
            "--budget",
            "kernels=6",
        ],
        NAYER_GPU_SUITE_TEST_HANG="kernels",
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # not every step ok
    steps = {s["name"]: s for s in json.loads((out / "results.json").read_text())["steps"]}
    assert steps["kernels"]["status"] == "timeout" and steps["kernels"]["wall_s"] < 15
    assert steps["memory_bank"]["status"] == "ok" and steps["env_tests"]["status"] == "not selected"
    assert "[kernels: timeout]" in (out / "summary.md").read_text()


def test_recipes_and_collect(tmp_path, monkeypatch):
    orchestrator, records, _, workers = _suite()
    nayer, di, fast = (workers.recipe(p) for p in ("cifar10", "cifar10_deepinversion", "cifar10_fast"))
    # NAYER E=100 after 20 warm-up epochs of 10 batches, 2 batches and 400 student steps per epoch.
    assert (
        nayer["synthesis_batches_warmup"],
        nayer["synthesis_batches"],
        nayer["steps_per_batch"],
        nayer["student_steps"],
    ) == (200, 200, 30, 40000)
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
