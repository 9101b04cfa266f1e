"""What the GPU suite runs: its steps with their default budgets, the conditions of the CIFAR-10 and
ImageNet steps, the files it writes, and the paper's numbers it compares with (see the package
docstring). Stdlib only."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
DEFAULT_CARRY = ROOT / ".gpu_carry"
RESULTS_ROOT = BENCH / "results" / "gpu"
MODULE = "benchmarks.gpu_suite"  # every step and worker process: python -m MODULE (from ROOT)
FILES = ("summary.md", "results.json", "records.jsonl", "steps.log", "kernels.csv")
HANG_ENV = "NAYER_GPU_SUITE_TEST_HANG"  # tests only: the named step sleeps instead of running

# name, default budget (s), title in the summary
STEPS = [
    ("env_tests", 75, "Environment and CUDA kernel tests (pytest -m gpu)"),
    ("kernels", 100, "Kernel benchmark at the realistic shapes (vs eager and torch.compile)"),
    ("cifar10", 150, "NAYER / DeepInversion / Fast end to end at the CIFAR-10 shapes (Table 2 hours)"),
    ("imagenet", 120, "ImageNet throughput (imagenet_r50 preset, bf16 eager vs torch.compile)"),
    ("memory_bank", 40, "Memory bank at 224 px"),
    ("kernel_tests_all", 25, "All other kernel tests compiled on CUDA (tests/test_kernels.py)"),
]
STEP_NAMES = [name for name, _, _ in STEPS]
TOTAL_BUDGET_S = 510
DEVICE_TIMEOUT_S = 560  # the device call's timeout_s: the suite's budget + start-up and the wheel install

# Paper, Table 2 (single A100, CIFAR-10 wrn40_2 -> wrn16_2, total training hours) and the average
# speed-ups vs DeepInversion quoted with it (REFERENCE.md).
PAPER_A100_HOURS = {"nayer": 2.05, "deepinversion": 31.23, "fast": 2.18}
PAPER_SPEEDUP = {"nayer": 14.88, "fast": 14.17, "deepinversion": 1.0}
METHOD_LABEL = {"nayer": "NAYER", "deepinversion": "DeepInversion", "fast": "Fast"}
CIFAR_PRESET = {"nayer": "cifar10", "deepinversion": "cifar10_deepinversion", "fast": "cifar10_fast"}
MINILM_DIM = 384

# Step 3 conditions, in priority order: (method, kernels, precision, timed generator/pixel steps or
# None for the preset's, post-warm-up batches timed, student steps timed)
CIFAR_CONDITIONS = [
    ("nayer", "triton", "bf16", None, 2, 20),
    ("nayer", "reference", "bf16", None, 2, 20),
    ("deepinversion", "triton", "bf16", 20, 2, 10),
    ("fast", "triton", "bf16", None, 3, 10),
    ("nayer", "triton", "fp32", None, 2, 20),
    ("nayer", "reference", "fp32", None, 2, 20),
]
CIFAR_DRY_CONDITIONS = [  # every method once; the Triton kernels in the interpreter
    ("nayer", "triton", "fp32", 1, 1, 2),
    ("deepinversion", "reference", "fp32", 2, 1, 2),
    ("fast", "reference", "fp32", 2, 1, 2),
]
# Toy sizes of the dry run: a small teacher at 8 px keeps the Triton interpreter to seconds.
CIFAR_DRY = ["teacher.arch=resnet8", "student.arch=resnet8", "teacher.image_size=8", "synthesis.batch_size=4",
             "synthesis.generator_width=8", "synthesis.noise_dim=16", "distill.batch_size=8", "run.cpu_threads=1"]
IMAGENET_CONDITIONS = ["bf16", "bf16+compile", "fp32"]
IMAGENET_TIMED_STEPS = 10  # generator steps per timed batch (the preset has 60; time per step is measured)
