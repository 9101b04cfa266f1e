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

# name, default budget (s), title in the summary; in priority order. The budgets sum to TOTAL_BUDGET_S
# (7 minutes) so that the suite fits twice in a 15-minute device lease.
STEPS = [
    ("env_tests", 50, "Environment and CUDA kernel tests (per-test budget)"),
    ("kernels", 55, "BN-statistics and re-init kernels: Triton vs reference vs torch baselines"),
    ("fashion_mnist", 110, "fashion_mnist preset: real fit() with the shipped teacher, Triton vs reference"),
    ("cifar10", 75, "NAYER / DeepInversion / Fast per batch at the CIFAR-10 shapes, profile, projections"),
    ("imagenet", 60, "ImageNet shapes (imagenet_r50): bf16 Triton, bf16 reference, fp32"),
    ("memory_bank", 15, "Memory bank at 224 px"),
    ("compile", 55, "torch.compile (hard cap): BN-statistics loss, then NAYER at CIFAR-10 with run.compile"),
]
STEP_NAMES = [name for name, _, _ in STEPS]
TOTAL_BUDGET_S = 420
HARD_CAP_STEPS = ("compile",)  # never given the time earlier steps left: its budget is its cap
DEVICE_TIMEOUT_S = 480  # the device call's timeout_s: the suite's budget + start-up and the wheel install
PER_TEST_BUDGET_S = 20  # pytest: a test still running after this many seconds fails (SIGALRM), the next one runs
FASHION_CARRY = "fashion-mnist"  # carry/<this>/t10k-*.gz: the real Fashion-MNIST test split
TIMED_REPS = 3  # timed repetitions of every per-batch / per-step number (median, min and max recorded)

# Paper, Table 2 (single A100, CIFAR-10 wrn40_2 -> wrn16_2, total training hours of the whole run,
# Tran et al., CVPR 2024; docs/method.md) and the average speed-ups vs DeepInversion quoted with it.
PAPER_A100_HOURS = {"nayer": 2.05, "deepinversion": 31.23, "fast": 2.18}
PAPER_SPEEDUP = {"nayer": 14.88, "fast": 14.17, "deepinversion": 1.0}
METHOD_LABEL = {"nayer": "NAYER", "deepinversion": "DeepInversion", "fast": "Fast"}
CIFAR_PRESET = {"nayer": "cifar10", "deepinversion": "cifar10_deepinversion", "fast": "cifar10_fast"}
# Where each projected recipe comes from (the preset holds the numbers).
RECIPE_SOURCE = {
    "nayer": "NAYER (Tran et al., CVPR 2024) CIFAR-10 scripts: E=100 after 20 warm-up epochs, 30 steps per batch",
    "deepinversion": "DeepInversion (Yin et al., CVPR 2020): 2k pixel iterations per batch, one batch per epoch",
    "fast": "Fast (Fang et al., AAAI 2022): 5 steps per batch, the NAYER schedule's epochs and student steps",
    "fashion_mnist": "this project's fashion_mnist preset (docs/method.md)",
}
MINILM_DIM = 384

# cifar10 conditions, in priority order: (method, kernels, precision, timed generator/pixel steps or
# None for the preset's, timed post-warm-up batches, timed student steps per repetition, profile)
CIFAR_CONDITIONS = [
    ("nayer", "triton", "bf16", None, TIMED_REPS, 10, True),
    ("nayer", "reference", "bf16", None, TIMED_REPS, 10, True),
    ("deepinversion", "triton", "bf16", 20, TIMED_REPS, 5, False),
    ("fast", "triton", "bf16", None, TIMED_REPS, 5, False),
]
CIFAR_DRY_CONDITIONS = [  # every method once; the Triton kernels in the interpreter
    ("nayer", "triton", "fp32", 1, TIMED_REPS, 2, True),
    ("deepinversion", "reference", "fp32", 2, TIMED_REPS, 2, False),
    ("fast", "reference", "fp32", 2, TIMED_REPS, 2, False),
]
# Toy sizes of the dry run: a small teacher at 8 px keeps the Triton interpreter to seconds.
CIFAR_DRY = [
    "teacher.arch=resnet8",
    "student.arch=resnet8",
    "teacher.image_size=8",
    "synthesis.batch_size=4",
    "synthesis.generator_width=8",
    "synthesis.noise_dim=16",
    "distill.batch_size=8",
    "run.cpu_threads=1",
]
# fashion_mnist conditions: (kernels, also time per batch / step for the projection first)
FASHION_CONDITIONS = [("triton", True), ("reference", False)]
# The dry run: the reference kernels (the Triton interpreter would take minutes at the shipped teacher's
# size; the CIFAR-10 step runs the trainer with Triton in the interpreter), and "auto" as the second fit.
FASHION_DRY_CONDITIONS = [("reference", True), ("auto", False)]
# Toy sizes of the dry run's fit(): 2 epochs (1 warm-up), tiny batches; the evaluator reads the whole
# real test split (10,000 images), so large evaluation batches.
FASHION_DRY = [
    "run.epochs=2",
    "run.warmup_epochs=1",
    "synthesis.batch_size=4",
    "synthesis.num_generator_steps=2",
    "synthesis.warmup_batches_per_epoch=1",
    "synthesis.generator_width=8",
    "synthesis.noise_dim=16",
    "distill.batch_size=8",
    "distill.steps_per_epoch=4",
    "eval.batch_size=1000",
    "run.cpu_threads=1",
]
# imagenet conditions: (label, precision, kernels, torch.compile)
IMAGENET_CONDITIONS = [
    ("bf16/triton", "bf16", "triton", False),
    ("bf16/reference", "bf16", "reference", False),
    ("fp32/triton", "fp32", "triton", False),
]
IMAGENET_DRY_CONDITIONS = [("fp32/reference", "fp32", "reference", False)]  # ResNet-50 in the interpreter: minutes
# The compile step's trainer condition: NAYER at the CIFAR-10 shapes with run.compile=true (the WRN-16-2
# student and the teacher's KD forward compiled). ResNet-50 under inductor takes longer than the step's cap.
CIFAR_COMPILE = ("nayer", "triton", "bf16", None, TIMED_REPS, 10, False)
IMAGENET_TIMED_STEPS = 3  # generator steps per timed batch (the preset has 60; time per step is measured)
