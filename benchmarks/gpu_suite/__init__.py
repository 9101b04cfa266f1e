"""The project's one prepared GPU suite: every GPU measurement in one command that fits a 15-minute
device lease (<= 9 minutes of wall time on an H100), each step in its own process with its own time
budget, each result written to the output folder as soon as it exists.

    bash scripts/prepare_gpu_suite.sh                # here, once: wheels + MiniLM LTE caches -> .gpu_carry/
    python3 -m benchmarks.gpu_suite --commit SHA [--dirty]   # on the GPU machine (results to $OUT or --out)
    python -m benchmarks.gpu_suite --print-command   # here: the device call (command with commit, carry, timeout_s)
    python -m benchmarks.gpu_suite --collect FOLDER  # here: what came back -> benchmarks/results/gpu/<date>-<device>/
    python -m benchmarks.gpu_suite --dry-run --out /tmp/suite   # every step at toy sizes on CPU (the test)

Steps, in priority order (name, default budget in seconds; unused time rolls over to later steps,
the whole suite stops at --total-budget, 510 s by default):

  1. env_tests (75): environment record (GPU name, driver, torch / triton / CUDA versions, commit)
     and ``pytest -m gpu tests/test_kernels.py`` (realistic shapes compiled on CUDA), then whether
     the GPU's ``tl.randn`` / ``tl.rand`` re-init draws equal the interpreter's (max |difference|
     and the share of bit-identical values).
  2. kernels (100): the cases of ``benchmarks/bench_kernels.py`` at the realistic shapes (the BN
     inputs of ResNet-50 at batch 256 and 224 px, 64x112x112 ... 2048x7x7, and of WRN-40-2 at batch
     400 and 32 px, in bf16; 40 noisy linears 512 -> 1000), one row at a time so that a timeout keeps
     the finished ones: noisy re-init (triton / one batched normal_ / the published per-layer
     loop), the BN-statistics loss forward + backward in channels_last against eager and
     torch.compile, then NCHW and the forward / backward split. Median ms (do_bench), GB/s of the
     minimum traffic and % of the measured copy bandwidth (1 GiB device copy), peak extra MB.
  3. cifar10 (150): NAYER end to end at the published CIFAR-10 shapes (WRN-40-2 -> WRN-16-2,
     synthesis batch 400, 30 generator steps, KD batch 512; random-weight teacher: throughput does
     not depend on the weights) with Triton kernels and with the references, bf16 and fp32; then
     DeepInversion (pixel steps timed over 20 of the 2000 per batch) and Fast (5 steps) at their
     published CIFAR settings. Each condition is a fresh ``NayerTrainer`` in its own process: after
     one untimed batch, timed synthesis batches (post-warm-up, with the adversarial term, and
     warm-up ones without it) and timed student steps. Projection of each method's full recipe on
     this GPU = warm-up batches x s/batch + later batches x s/batch + student steps x s/step (the
     recipe of the preset: cifar10 = E=100 after 20 warm-up epochs, cifar10_deepinversion,
     cifar10_fast), next to the paper's single-A100 hours (NAYER 2.05, DeepInversion 31.23, Fast
     2.18) and speed-ups (NAYER 14.88x, Fast 14.17x DeepInversion). Memory-bank I/O, evaluation,
     checkpoints and set-up are not in the projection (the paper's hours count them).
  4. imagenet (120): ``benchmarks/imagenet_throughput.measure`` under the imagenet_r50 preset
     (random-weight ResNet-50 teacher and student, synthesis batch 256 at 224 px, student batch
     256): bf16 eager, bf16 + torch.compile, then fp32 eager. Synthesis is timed over 10 generator
     steps per batch and scaled to the preset's 60 (the time per step is what is measured);
     projection of the full 320-epoch preset per process = single-node wall-clock.
  5. memory_bank (40): ``MemoryBank`` shards of 256 x 3 x 224 x 224 uint8 images: write MB/s
     (tar + fsync), shard load time, and ``sample(256)`` images/s and MB/s with the bank cached on
     the GPU ("device"), in host RAM ("cpu") and read from the shard files ("none").
  6. kernel_tests_all (25, plus whatever earlier steps left): the rest of tests/test_kernels.py compiled on
     CUDA (odd shapes, fp32/bf16/fp16, forward and backward, RNG statistics), without the
     end-to-end test (it needs the MiniLM package).

Set-up it does itself: ``nayer_kernels`` importable from ``kernels/`` without an install (a
temporary folder with a link, first on sys.path and PYTHONPATH, with the repository root);
webdataset and braceexpand installed with ``pip --no-index --no-deps --target`` from the carried
wheels when missing; the label-text embeddings read from the carried MiniLM cache
(``.gpu_carry/lte``), so no text encoder is needed there (without it: the weight-free hashed
encoder of the same width, 384, which the results say).

Output (at most 8 files, directly in the folder, as the device tool brings back): ``summary.md``
(tables of every step, rewritten after each step), ``results.json`` (meta, step statuses, every
record), ``records.jsonl`` (records as they are measured), ``steps.log`` (the output of every
step) and ``kernels.csv`` (bench_kernels rows). ``--dry-run`` runs every step at toy sizes on CPU
(Triton interpreter, one thread per process) and writes the same files; tests/test_gpu_suite.py
runs it.

The package, one job per module (stdlib only at import time: the orchestrator starts on the GPU
machine before anything is installed there; torch and nayer_scale are imported inside the step and
worker processes):

    __main__.py      ``python -m benchmarks.gpu_suite``: orchestrator.main
    orchestrator.py  arguments, step scheduling and budgets, process-tree control, --collect,
                     --print-command (the device-lease plumbing)
    spec.py          what the suite runs: steps and budgets, conditions, output files, paper numbers
    records.py       records.jsonl, and the package's one atomic writer
    install.py       the step processes' environment: nayer_kernels link, carried wheels, LTE caches
    steps.py         the six steps (one process each)
    workers.py       the CIFAR-10 and ImageNet conditions (one process each)
    render.py        summary.md (tables through benchmarks.lib.report)
"""
