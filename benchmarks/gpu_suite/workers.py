"""The suite's worker processes (``python -m benchmarks.gpu_suite --worker KIND``), one measurement
each in a fresh process (an Accelerator's precision is fixed for its process): a CIFAR-10
condition (``worker_cifar``) or an ImageNet one (``worker_imagenet``, through
``benchmarks.imagenet_throughput.measure``), and the recipe each projection uses. Device sync and
peak memory through ``benchmarks.lib.timing``; torch and nayer_scale imported inside."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.gpu_suite.install import lte_overrides
from benchmarks.gpu_suite.records import append_record
from benchmarks.gpu_suite.spec import CIFAR_DRY, CIFAR_PRESET, IMAGENET_TIMED_STEPS, PAPER_A100_HOURS
from benchmarks.lib.timing import peak_gb, reset_peak, timed


def recipe(preset: str) -> dict:
    """Synthesis batches (warm-up and later), steps per batch and student steps of a preset's run."""
    from nayer_scale.recipes import get_preset
    from nayer_scale.synthesis import batches_before_epoch

    cfg = get_preset(preset)
    s, r = cfg.synthesis, cfg.run
    warm = batches_before_epoch(r.warmup_epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    total = batches_before_epoch(r.epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    return {"preset": preset, "epochs": r.epochs, "warmup_epochs": r.warmup_epochs, "synthesis_batches_warmup": warm,
            "synthesis_batches": total - warm, "steps_per_batch": s.num_generator_steps,
            "student_steps": (r.epochs - r.warmup_epochs) * cfg.distill.steps_per_epoch}


def worker_cifar(spec: dict, args: argparse.Namespace) -> dict:
    """One CIFAR-10 condition: a NayerTrainer on the method's preset (random-weight teacher), an
    untimed batch, timed post-warm-up and warm-up batches, timed student steps; the projection of
    the preset's full recipe (see the package docstring)."""
    import torch

    from nayer_scale.lte import load_lte_file

    method, preset = spec["method"], CIFAR_PRESET[spec["method"]]
    full = recipe(preset)
    timed_steps = spec["timed_steps"] or full["steps_per_batch"]
    trainer, cfg, lte_info = _cifar_trainer(spec, args, preset, timed_steps)
    lte_from_cache = (bool(torch.equal(trainer.lte.cpu(), load_lte_file(lte_info["lte_file"])[0]))
                      if lte_info["lte_file"] and trainer.lte is not None else None)
    times = _time_cifar(trainer, spec, args.dry_run)
    s, d = cfg.synthesis, cfg.distill
    scale = full["steps_per_batch"] / timed_steps
    s_batch, s_warm_batch = times["s_adv"] * scale, (times["s_warm"] or times["s_adv"]) * scale
    synth_h = (full["synthesis_batches_warmup"] * s_warm_batch + full["synthesis_batches"] * s_batch) / 3600
    student_h = full["student_steps"] * times["s_step"] / 3600
    return {"method": method, "kernels": trainer.kernel_backend, "precision": spec["precision"],
            "resolved_precision": trainer.precision.to_dict(), "device": trainer.device_kind,
            "teacher": cfg.teacher.arch, "student": cfg.student.arch, "image_size": cfg.teacher.image_size,
            "synthesis_batch": s.batch_size, "timed_steps_per_batch": timed_steps, "student_batch": d.batch_size,
            "timed_batches": spec["batches"], "timed_student_steps": spec["student_steps"],
            "s_per_batch": s_batch, "s_per_warmup_batch": s_warm_batch if times["s_warm"] else None,
            "synthesis_images_per_s": s.batch_size / s_batch,
            "generator_step_images_per_s": s.batch_size * full["steps_per_batch"] / s_batch,
            "s_per_student_step": times["s_step"], "student_images_per_s": d.batch_size / times["s_step"],
            "synthesis_peak_gb": times["synthesis_peak_gb"], "student_peak_gb": times["student_peak_gb"],
            "last_synthesis_loss": times["last_synthesis_loss"], "kd_loss": times["kd_loss"],
            "recipe": full, "projected_synthesis_hours": synth_h, "projected_student_hours": student_h,
            "projected_hours": synth_h + student_h, "paper_a100_hours": PAPER_A100_HOURS[method],
            "lte_from_carried_cache": lte_from_cache, **lte_info}


def _cifar_trainer(spec: dict, args: argparse.Namespace, preset: str, timed_steps: int):
    """(trainer, config, LTE record) of one CIFAR-10 condition: the preset with a random-weight
    teacher, no evaluation, the condition's precision and kernels, ``timed_steps`` generator steps
    per batch, the carried LTE cache when there is one (toy sizes in the dry run)."""
    from nayer_scale.config import apply_overrides
    from nayer_scale.recipes import get_preset
    from nayer_scale.trainer import NayerTrainer

    scratch = Path(args.scratch)
    lte, lte_info = lte_overrides("cifar10", Path(args.carry), scratch, args.dry_run)
    run_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="cifar_"))
    cfg = apply_overrides(get_preset(preset), [
        "teacher.weights=", "eval.dataset=none", f"run.run_dir={run_dir}/run", "run.resume=false", "run.progress=false",
        f"run.mixed_precision={'bf16' if spec['precision'] == 'bf16' else 'no'}", f"run.kernels={spec['kernels']}",
        "memory.cache=device", f"synthesis.num_generator_steps={timed_steps}", *lte,
        *(CIFAR_DRY if args.dry_run else [])])
    return NayerTrainer(cfg.validate()), cfg, lte_info


def _time_cifar(trainer, spec: dict, dry: bool) -> dict:
    """Seconds per post-warm-up batch (``s_adv``) and warm-up batch (``s_warm``, None without
    warm-up), per student step (``s_step``), the phases' peak GiB and the last losses."""
    epoch = trainer.cfg.run.warmup_epochs  # after warm-up: the adversarial term (a student forward) is on
    trainer.synthesize_batch(epoch, 0)  # untimed: Triton JIT, cuDNN autotuning, allocator
    reset_peak()
    out: dict = {}

    def synth(e: int):
        def one(i: int) -> None:  # a synthesis batch and its shard written to the memory bank, as in a run
            out["images"], out["labels"], out["losses"] = trainer.synthesize_batch(e, i + 1)
        return one

    s_adv = timed(synth(epoch), spec["batches"])
    s_warm = timed(synth(0), 1) if trainer.cfg.run.warmup_epochs else None  # warm-up batch: no adversarial term
    synth_peak = _peak(peak_gb())
    trainer.distill_steps(1 if dry else 5)  # untimed warm-up steps
    reset_peak()
    kd: dict = {}
    s_step = timed(lambda i: kd.update(trainer.distill_steps(spec["student_steps"])), 1) / spec["student_steps"]
    if kd["steps"] != spec["student_steps"]:
        raise ValueError(f"{spec['student_steps']} student steps asked, the epoch has {kd['steps']}")
    return {"s_adv": s_adv, "s_warm": s_warm, "s_step": s_step, "synthesis_peak_gb": synth_peak,
            "student_peak_gb": _peak(peak_gb()), "last_synthesis_loss": float(out["losses"]["loss"]),
            "kd_loss": float(kd["kd_sum"]) / kd["steps"]}


def _peak(gb: float | None) -> float | None:
    """Peak GiB rounded to 2 decimals (None on CPU)."""
    return None if gb is None else round(gb, 2)


def worker_imagenet(spec: dict, args: argparse.Namespace) -> dict:
    """One imagenet_throughput.measure condition; the synthesis rate per generator step scaled to
    the preset's steps per batch, and the projection of the full preset redone with it."""
    from benchmarks import imagenet_throughput

    full = recipe("imagenet_r50")
    lte, lte_info = lte_overrides("imagenet", Path(args.carry), Path(args.scratch), args.dry_run)
    if args.dry_run:  # SMOKE's hashed encoder gives way to the carried cache, if any
        overrides = imagenet_throughput.SMOKE + lte + ["run.cpu_threads=1", "synthesis.num_generator_steps=1"]
        batches, steps = 1, 2
    else:
        overrides = lte + [f"synthesis.num_generator_steps={IMAGENET_TIMED_STEPS}"]
        batches, steps = 1, 10
    row = imagenet_throughput.measure(spec["condition"], "tv_resnet50", overrides, batches, steps)
    row["commit"] = args.commit
    row.update({k: None for k, v in row.items() if isinstance(v, float) and v != v})  # NaN peaks on CPU: null
    if not row["generator_step_images_per_s"] or not row["student_images_per_s"]:
        raise RuntimeError(f"measure() returned a zero rate (rounded): {row}")
    s_step = row["synthesis_batch"] / row["generator_step_images_per_s"]  # s per generator step
    s_batch = s_step * full["steps_per_batch"]
    s_student = row["student_batch"] / row["student_images_per_s"]
    batches = full["synthesis_batches_warmup"] + full["synthesis_batches"]
    hours = (batches * s_batch + full["student_steps"] * s_student) / 3600
    return {**row, "timed_generator_steps": row["generator_steps"], "s_per_batch": s_batch,
            "synthesis_images_per_s": row["synthesis_batch"] / s_batch, "projected_hours_per_process": hours,
            "projected_gpu_hours_8": 8 * hours, "recipe": full, "measure_row": dict(row), **lte_info}


def run_worker(args: argparse.Namespace) -> int:
    """A worker process (``--worker cifar|imagenet --spec JSON``): measure one condition and append
    its ``<kind>_condition`` record (with the worker's wall seconds). Returns 0; raises on failure
    (the step records the exit status)."""
    spec = json.loads(args.spec)
    start = time.perf_counter()
    if args.dry_run:
        import torch

        torch.set_num_threads(1)
    fn = {"cifar": worker_cifar, "imagenet": worker_imagenet}[args.worker]
    result = fn(spec, args)
    append_record(Path(args.out), {"step": args.run_step, "kind": f"{args.worker}_condition", "label": spec["label"],
                                   "worker_s": round(time.perf_counter() - start, 1), **result})
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, default=str), flush=True)
    return 0
