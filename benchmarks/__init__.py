"""The benchmarks of nayer-scale, one measurement per script, each run from the repository root as
``python -m benchmarks.<script>`` (``--help`` gives its options; ``--smoke`` where it has one
checks the script at tiny sizes and measures nothing). Results go to ``benchmarks/results/`` as a
CSV with the provenance on every row and the markdown (and plot) rendered from it.

Scripts:
    gpu_hours            student top-1 against device-hours: NAYER vs DeepInversion vs Fast (paper
                         Table 2, Figure 1)
    ablations            generator input / noisy-layer variants, prompt templates and text encoders:
                         epochs to a synthesis CE, diversity, top-1 (paper Tables 4, 6, 7)
    memory_cap           student top-1 against the memory-bank cap, FIFO and reservoir (paper Table 5)
    quantization         data-free quantization: PTQ, ZeroQ-style, NAYER, real data at W8A8 ... W4A4
                         (paper Table 3)
    bench_kernels        Triton kernels vs the eager PyTorch references and torch.compile: median ms,
                         GB/s, share of the copy bandwidth, peak memory (GPU)
    imagenet_throughput  synthesis and student images/s and peak memory per GPU under the
                         imagenet_r50 preset, and the projected hours of a full run (GPU)
    weak_scaling         per-process synthesis and student throughput at 1 and N processes
    memory_bank          student-step data wait, read throughput and node memory per cache mode;
                         bytes and decode rate per encoding
    precision_cpu        seconds per teacher / generator / student step, fp32 / bf16, NCHW /
                         channels_last, on CPU
    profile_cpu          where the Fashion-MNIST demo's CPU time goes (torch.profiler groups)
    gpu_suite            every GPU measurement in one command that fits a 15-minute device lease
                         (a package: orchestrator, steps, workers, render, install)
    record_run           stores a finished run's summary with its provenance (results/<name>.json)
    report               re-renders a results CSV into its markdown (and plot)
    cpu_demo             (helper) the demo trainer that precision_cpu and profile_cpu time

Shared library: ``benchmarks.lib`` (``provenance``, ``report``, ``timing``). Stdlib only at import
time: ``python -m benchmarks.gpu_suite`` starts on a GPU machine before anything is installed.
"""
