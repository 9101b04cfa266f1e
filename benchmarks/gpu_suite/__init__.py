"""The project's one prepared GPU suite: every GPU measurement in one command, run as the first call
of a 15-minute device lease: its step budgets sum to 420 s (7 minutes on an H100), so the suite fits
twice in one lease; each step runs in its own process with its own budget, each result is written
to the output folder as soon as it exists.

    bash scripts/prepare_gpu_suite.sh                # here, once: wheels, LTE caches, test split -> .gpu_carry/
    python3 -m benchmarks.gpu_suite --commit SHA [--dirty]   # on the GPU machine (results to $OUT or --out)
    python -m benchmarks.gpu_suite --print-command   # here: the device call (command with commit, carry, timeout_s)
    python -m benchmarks.gpu_suite --collect FOLDER  # here: what came back -> benchmarks/results/gpu/<date>-<device>/
    python -m benchmarks.gpu_suite --dry-run --out /tmp/suite   # every step at toy sizes on CPU (the test)

Steps, in priority order (name, default budget in seconds; unused time rolls over to later steps
except to the hard-capped compile step; the whole suite stops at --total-budget, 420 s):

  1. env_tests (50): environment record (GPU, driver, torch / triton / CUDA versions, commit); the
     CUDA kernel tests with a per-test budget of 20 s (``pytest -p benchmarks.gpu_suite.pytest_budget``:
     a test past it fails and the next one runs; no extra package, no conftest): ``-m gpu`` (realistic
     shapes), then the rest of tests/unit/test_kernels.py compiled on CUDA (no end-to-end test); the 5
     slowest tests; the GPU's ``tl.randn`` / ``tl.rand`` re-init draws against the interpreter's.
  2. kernels (55): bench_kernels' cases, WRN-40-2 shapes first (batch 400 at 32 px, the paper's
     Table 2 teacher), then ResNet-50 (batch 256 at 224 px); channels_last, then NCHW; bf16: Triton
     and the PyTorch reference (forward + backward, forward), and the forward-only statistics
     baselines torch.var_mean and torch.batch_norm_stats (CUDA only); then the noisy re-init (40
     linears 512 -> 1000: Triton, one batched normal_, the published per-layer loop) and the
     backward-only split. Per case: do_bench's GPU ms and the host-inclusive ms per call (perf_counter
     around one synced call), each median (min-max); GB/s of the minimum traffic and % of the copy
     bandwidth (1 GiB device copy); peak extra MB. Every variant of a group is warmed before it is timed.
  3. fashion_mnist (110): the fashion_mnist preset's real fit() with the shipped teacher
     (nayer_scale/assets) and the real test split carried in ``.gpu_carry/fashion-mnist``, with the
     Triton kernels and with the references: teacher and student top-1, summary.json's phases, the
     wall clock. Before the Triton fit, the same per-batch / per-step timing as step 4 on the same
     preset, and its projection of the whole run beside the measured wall clock.
  4. cifar10 (75): NAYER (Triton, reference), DeepInversion (pixel steps timed over 20 of its 2000
     per batch) and Fast at the CIFAR-10 shapes (WRN-40-2 -> WRN-16-2, synthesis batch 400, student
     batch 512; random-weight teacher: the time does not depend on the weights), bf16, one process
     each. After an untimed first batch and an untimed second one (the BN-statistics EMA set), 3
     timed post-warm-up batches, 3 warm-up batches and 3 repetitions of student steps, each the
     host-inclusive seconds per call, median / min / max; one torch.profiler share table of a NAYER
     synthesis batch (the share of CPU and CUDA time in the BN-statistics loss and the noisy-layer
     re-init). PROJECTIONS of each method's own published recipe on this project's code, in hours of
     this device (cifar10: E=100 after 20 warm-up epochs; cifar10_deepinversion: 2000 iterations per
     batch, 120 batches; cifar10_fast: 5 steps per batch, the NAYER schedule), with the paper's
     single-A100 hours (Table 2: NAYER 2.05, DeepInversion 31.23, Fast 2.18) in their own column.
  5. imagenet (60): the imagenet_r50 preset's shapes (random-weight ResNet-50 teacher and student,
     synthesis batch 256 at 224 px): bf16 Triton, bf16 reference, fp32; the same timing over 3
     generator steps per batch (scaled to the preset's 60); projection of the 320-epoch preset per
     process.
  6. memory_bank (15): ``MemoryBank`` shards of 256 x 3 x 224 x 224 uint8 images: write MB/s (tar +
     fsync), load time, ``sample(256)`` images/s per cache, the prefetching path's data wait.
  7. compile (55, hard cap, last): torch.compile(bn_stats_loss_reference) on the BN shapes for up
     to 35% of the cap, then NAYER at the CIFAR-10 shapes with run.compile=true.

Set-up it does itself: ``nayer_kernels`` importable from ``kernels/`` without an install (a
temporary folder with a link, first on sys.path and PYTHONPATH, with the repository root);
webdataset and braceexpand installed with ``pip --no-index --no-deps --target`` from the carried
wheels when missing; the label-text embeddings read from the carried MiniLM cache
(``.gpu_carry/lte``), so no text encoder is needed there (without it: the weight-free hashed
encoder of the same width, 384, which the results say).

Output (at most 8 files, directly in the folder, as the device tool brings back): ``summary.md``
(tables of every step, rewritten after each step), ``results.json`` (meta, step statuses, every
record), ``records.jsonl`` (records as they are measured), ``steps.log`` (the output of every
step) and ``kernels.csv`` (bench_kernels rows with the min / max and host times). ``--dry-run``
runs every step at toy sizes on CPU (Triton interpreter, one thread per process) and writes the
same files; tests/integration/test_gpu_suite.py runs it.

The package, one job per module (stdlib only at import time: the orchestrator starts on the GPU
machine before anything is installed there; torch and nayer_scale are imported inside the step and
worker processes):

    __main__.py      ``python -m benchmarks.gpu_suite``: orchestrator.main
    orchestrator.py  arguments, step scheduling and budgets, process-tree control, --collect,
                     --print-command (the device-lease plumbing)
    spec.py          what the suite runs: steps and budgets, conditions, output files, paper numbers
    records.py       records.jsonl, and the package's one atomic writer
    install.py       the step processes' environment: nayer_kernels link, carried wheels, LTE caches,
                     the carried Fashion-MNIST test split
    steps.py         the steps (one process each) and their pytest runs
    kernel_steps.py  the kernel cases of the kernels and compile steps
    pytest_budget.py the pytest plugin of the per-test budget
    workers.py       the fashion_mnist, CIFAR-10 and ImageNet conditions (one process each), recipes
                     and projections
    phases.py        the trainer's phases timed (median / min / max) and the profiler share table
    render.py        summary.md (tables through benchmarks.lib.report)
"""
