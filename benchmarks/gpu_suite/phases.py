"""Timing of the trainer's public phases in the suite's workers, and the profiler share table.

``time_phases``: after every variant is warmed (an untimed first batch: JIT compile, cuDNN
autotuning, the allocator; an untimed second batch: the BN-statistics EMA is set, so the timed
batches take the steady path; the same for warm-up batches and for student steps), ``reps`` timed
repetitions of each phase, each a host-inclusive wall time (``time.perf_counter`` around the call,
the device synchronised before and after), with median, min and max.

``profile_share``: one synthesis batch under ``torch.profiler`` with the BN-statistics loss and the
noisy-layer re-init inside ``record_function`` ranges (the library's functions wrapped here, not
edited): the fraction of the batch's CPU time and of its CUDA kernel time in each. torch is
imported inside."""

from __future__ import annotations

import contextlib

from benchmarks.lib.timing import peak_gb, repeat_stats, reset_peak

BN_RANGE, REINIT_RANGE, BATCH_RANGE = "suite::bn_stats_loss", "suite::noisy_reinit", "suite::synthesis_batch"
# autograd nodes of the BN-statistics loss's backward (Triton autograd.Function, reference batch statistics)
BN_BACKWARD = ("BNStatsLossFunctionBackward", "_BatchStatisticsBackward")


def _stats(rep: dict, per: int = 1) -> dict:
    """``repeat_stats`` seconds divided by ``per`` (calls per repetition)."""
    return {
        "median_s": rep["median_s"] / per,
        "min_s": rep["min_s"] / per,
        "max_s": rep["max_s"] / per,
        "repeats": rep["repeats"],
    }


def time_phases(trainer, reps: int, student_steps: int, warm_student: int) -> dict:
    """Seconds per post-warm-up synthesis batch (``adv``, the adversarial term on), per warm-up
    batch (``warm``; None when the preset has no warm-up) and per student step (``step``; each
    repetition is ``student_steps`` steps), each ``{"median_s", "min_s", "max_s", "repeats"}``; the
    phases' peak GiB and the last losses. A timed batch includes writing its shard, as in a run.

    Raises:
        ValueError: the epoch has fewer student steps than one repetition asks."""
    epoch = trainer.cfg.run.warmup_epochs  # after warm-up: the adversarial term (a student forward) is on
    out: dict = {}
    for b in (0, 1):  # untimed: JIT / autotuning / allocator, then the BN-statistics EMA set
        trainer.synthesize_batch(epoch, b)
    reset_peak()

    def synth(e: int, first: int):
        def one(i: int) -> None:
            out["images"], out["labels"], out["losses"] = trainer.synthesize_batch(e, first + i)

        return one

    adv = _stats(repeat_stats(synth(epoch, 2), reps))
    warm = None
    if trainer.cfg.run.warmup_epochs:  # warm-up batches: no adversarial term (one untimed first)
        trainer.synthesize_batch(0, 1)
        warm = _stats(repeat_stats(synth(0, 2), reps))
    synth_peak = peak_gb()
    trainer.distill_steps(warm_student)  # untimed warm-up steps
    reset_peak()
    kd = {"kd_sum": 0.0, "steps": 0}

    def steps(_: int) -> None:
        r = trainer.distill_steps(student_steps)
        if r["steps"] != student_steps:
            raise ValueError(f"{student_steps} student steps asked, the epoch has {r['steps']}")
        kd["kd_sum"], kd["steps"] = r["kd_sum"], r["steps"]

    step = _stats(repeat_stats(steps, reps), student_steps)
    return {
        "adv": adv,
        "warm": warm,
        "step": step,
        "synthesis_peak_gb": _round(synth_peak),
        "student_peak_gb": _round(peak_gb()),
        "last_synthesis_loss": float(out["losses"]["loss"]),
        "kd_loss": float(kd["kd_sum"]) / kd["steps"],
        "next_batch": 2 + reps,
    }


def _round(gb: float | None) -> float | None:
    """Peak GiB rounded to 2 decimals (None on CPU)."""
    return None if gb is None else round(gb, 2)


@contextlib.contextmanager
def _ranges():
    """The BN-statistics loss and the noisy-layer re-init, as the synthesis calls them, inside
    ``record_function`` ranges for the duration of the block."""
    import torch

    from nayer_scale.synthesis import bn_hooks, noisy_layer

    originals = {(bn_hooks, "bn_stats_loss"): BN_RANGE, (noisy_layer, "reinit_noisy_linears"): REINIT_RANGE}
    saved = {key: getattr(*key) for key in originals}

    def wrap(fn, name):
        def ranged(*args, **kwargs):
            with torch.profiler.record_function(name):
                return fn(*args, **kwargs)

        return ranged

    for (module, attr), name in originals.items():
        setattr(module, attr, wrap(saved[(module, attr)], name))
    try:
        yield
    finally:
        for (module, attr), fn in saved.items():
            setattr(module, attr, fn)


def profile_share(trainer, epoch: int, batch_index: int) -> dict:
    """One synthesis batch (``trainer.synthesize_batch(epoch, batch_index, store=False)``) under
    torch.profiler: for the BN-statistics loss (forward range + its backward autograd nodes), its
    forward alone, and the noisy-layer re-init, the milliseconds and the fraction of the batch's
    CPU time and of its CUDA kernel time (None without CUDA)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with _ranges(), profile(activities=activities) as prof:
        with record_function(BATCH_RANGE):
            trainer.synthesize_batch(epoch, batch_index, store=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return share_table(prof.events())


def _device_total(e) -> float:
    return float(getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0) or 0.0)


def _self_device(e) -> float:
    return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0) or 0.0)


def share_table(events) -> dict:
    """The share table of profiled ``events`` (torch.autograd.profiler FunctionEvents of one
    ``BATCH_RANGE``): ``{"batch_cpu_ms", "batch_cuda_ms", "rows": {name: {"cpu_ms", "cpu_share",
    "cuda_ms", "cuda_share", "calls"}}}``; CUDA kernel time is the sum of every device event's own
    time (None when there is none)."""
    from torch.autograd import DeviceType

    batch = [e for e in events if e.name == BATCH_RANGE]
    cpu_total = sum(e.cpu_time_total for e in batch) / 1e3
    device_total = sum(_self_device(e) for e in events if e.device_type != DeviceType.CPU) / 1e3
    backward = [
        e
        for e in events
        if e.name.startswith("autograd::engine::evaluate_function") and any(n in e.name for n in BN_BACKWARD)
    ]
    groups = {
        "bn_stats_loss (forward + backward)": [e for e in events if e.name == BN_RANGE] + backward,
        "bn_stats_loss forward": [e for e in events if e.name == BN_RANGE],
        "noisy re-init": [e for e in events if e.name == REINIT_RANGE],
    }
    rows = {}
    for name, evs in groups.items():
        cpu = sum(e.cpu_time_total for e in evs) / 1e3
        dev = sum(_device_total(e) for e in evs) / 1e3
        rows[name] = {
            "calls": len(evs),
            "cpu_ms": cpu,
            "cpu_share": cpu / cpu_total if cpu_total else None,
            "cuda_ms": dev if device_total else None,
            "cuda_share": dev / device_total if device_total else None,
        }
    return {"batch_cpu_ms": cpu_total, "batch_cuda_ms": device_total or None, "rows": rows}
