"""The suite's worker processes (``python -m benchmarks.gpu_suite --worker KIND``), one measurement
each in a fresh process (an Accelerator's precision is fixed for its process): a CIFAR-10
condition (``worker_cifar``), a fashion_mnist ``fit()`` (``worker_fashion``) or an ImageNet-shape
condition (``worker_imagenet``), and the projections, which apply each method's own published
recipe (``recipe``) to the per-batch and per-step times measured here (``phases.time_phases``).
torch and nayer_scale are imported inside."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.gpu_suite.install import fashion_root, lte_overrides
from benchmarks.gpu_suite.phases import profile_share, time_phases
from benchmarks.gpu_suite.records import append_record
from benchmarks.gpu_suite.spec import (
    CIFAR_DRY,
    CIFAR_PRESET,
    FASHION_DRY,
    IMAGENET_TIMED_STEPS,
    PAPER_A100_HOURS,
    RECIPE_SOURCE,
    TIMED_REPS,
)


def recipe(preset: str) -> dict:
    """Synthesis batches (warm-up and later), their size, steps per batch and student steps of a
    preset's whole run (the method's published recipe for the CIFAR-10 presets)."""
    from nayer_scale.recipes import get_preset

    return recipe_of(get_preset(preset), preset)


def recipe_of(cfg, name: str) -> dict:
    """``recipe``'s fields for a config (e.g. the dry run's toy fashion_mnist), named ``name``."""
    from nayer_scale.synthesis import batches_before_epoch

    s, r = cfg.synthesis, cfg.run
    warm = batches_before_epoch(r.warmup_epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    total = batches_before_epoch(r.epochs, r.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    return {
        "preset": name,
        "epochs": r.epochs,
        "warmup_epochs": r.warmup_epochs,
        "synthesis_batches_warmup": warm,
        "synthesis_batches": total - warm,
        "synthesis_batch_size": s.batch_size,
        "steps_per_batch": s.num_generator_steps,
        "student_steps": (r.epochs - r.warmup_epochs) * cfg.distill.steps_per_epoch,
        "student_batch_size": cfg.distill.batch_size,
    }


def project(full: dict, times: dict, timed_steps: int) -> dict:
    """Hours of ``full`` (a ``recipe``) on this device from ``time_phases``' times: warm-up batches x
    s/warm-up batch + later batches x s/batch (scaled from ``timed_steps`` to the recipe's steps
    per batch) + student steps x s/step, at the median and at the min / max of the repetitions.
    Set-up, evaluation, memory-bank reads and checkpoints are not in it (the paper's hours are)."""
    scale = full["steps_per_batch"] / timed_steps
    out = {"projection": "this project's code on this device, the method's published recipe"}
    for stat in ("median", "min", "max"):
        adv, warm = times["adv"][f"{stat}_s"] * scale, (times["warm"] or times["adv"])[f"{stat}_s"] * scale
        synth = (full["synthesis_batches_warmup"] * warm + full["synthesis_batches"] * adv) / 3600
        student = full["student_steps"] * times["step"][f"{stat}_s"] / 3600
        suffix = "" if stat == "median" else f"_{stat}"
        out.update(
            {
                f"projected_synthesis_hours{suffix}": synth,
                f"projected_student_hours{suffix}": student,
                f"projected_hours{suffix}": synth + student,
            }
        )
    out.update(
        s_per_batch=times["adv"]["median_s"] * scale,
        s_per_warmup_batch=times["warm"]["median_s"] * scale if times["warm"] else None,
    )
    return out


def _trainer(preset: str, overrides: list[str], scratch: Path, tag: str):
    """(trainer, config) of ``preset`` with ``overrides`` in a fresh run folder under ``scratch``."""
    from nayer_scale.config import apply_overrides
    from nayer_scale.recipes import get_preset
    from nayer_scale.trainer import NayerTrainer

    run_dir = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{tag}_"))
    cfg = apply_overrides(
        get_preset(preset), [f"run.run_dir={run_dir}/run", "run.resume=false", "run.progress=false", *overrides]
    )
    return NayerTrainer(cfg.validate()), cfg


def _precision(name: str) -> str:
    return f"run.mixed_precision={'bf16' if name == 'bf16' else 'no'}"


def _cifar_overrides(spec: dict, timed_steps: int, lte: list[str], dry_run: bool) -> list[str]:
    """A CIFAR-10 condition's overrides of its method's preset: random-weight teacher, no
    evaluation, the condition's precision / kernels / compile, ``timed_steps`` per batch."""
    return [
        "teacher.weights=",
        "eval.dataset=none",
        _precision(spec["precision"]),
        f"run.kernels={spec['kernels']}",
        f"run.compile={spec.get('compile', False)}",
        "memory.cache=device",
        f"synthesis.num_generator_steps={timed_steps}",
        *lte,
        *(CIFAR_DRY if dry_run else []),
    ]


def _lte_from_cache(trainer, lte_file: str | None) -> bool | None:
    """Whether the trainer's label-text embeddings equal the carried pool file (None: no file or
    no LTE)."""
    import torch

    from nayer_scale.lte import load_lte_file

    if not lte_file or trainer.lte is None:
        return None
    return bool(torch.equal(trainer.lte.cpu(), load_lte_file(lte_file)[0]))


def worker_cifar(spec: dict, args: argparse.Namespace) -> dict:
    """One CIFAR-10 condition: a NayerTrainer on the method's preset (random-weight teacher: the
    time does not depend on the weights), ``time_phases``, the profiler share table of one batch
    (``spec["profile"]``), and the projection of the method's published recipe."""
    method, preset = spec["method"], CIFAR_PRESET[spec["method"]]
    full = recipe(preset)
    timed_steps = spec["timed_steps"] or full["steps_per_batch"]
    lte, lte_info = lte_overrides("cifar10", Path(args.carry), Path(args.scratch), args.dry_run)
    trainer, cfg = _trainer(preset, _cifar_overrides(spec, timed_steps, lte, args.dry_run), Path(args.scratch), "cifar")
    lte_from_cache = _lte_from_cache(trainer, lte_info["lte_file"])
    times = time_phases(trainer, spec["batches"], spec["student_steps"], 1 if args.dry_run else 5)
    share = profile_share(trainer, cfg.run.warmup_epochs, times["next_batch"]) if spec.get("profile") else None
    s, d = cfg.synthesis, cfg.distill
    proj = project(full, times, timed_steps)
    return {
        "method": method,
        "kernels": trainer.kernel_backend,
        "precision": spec["precision"],
        "compile": bool(spec.get("compile")),
        "resolved_precision": trainer.precision.to_dict(),
        "device": trainer.device_kind,
        "teacher": cfg.teacher.arch,
        "student": cfg.student.arch,
        "image_size": cfg.teacher.image_size,
        "synthesis_batch": s.batch_size,
        "timed_steps_per_batch": timed_steps,
        "student_batch": d.batch_size,
        "batch_s": times["adv"],
        "warmup_batch_s": times["warm"],
        "student_step_s": times["step"],
        "synthesis_images_per_s": s.batch_size / proj["s_per_batch"],
        "generator_step_images_per_s": s.batch_size * full["steps_per_batch"] / proj["s_per_batch"],
        "s_per_student_step": times["step"]["median_s"],
        "student_images_per_s": d.batch_size / times["step"]["median_s"],
        "synthesis_peak_gb": times["synthesis_peak_gb"],
        "student_peak_gb": times["student_peak_gb"],
        "last_synthesis_loss": times["last_synthesis_loss"],
        "kd_loss": times["kd_loss"],
        "profile": share,
        "recipe": full,
        "recipe_source": RECIPE_SOURCE[method],
        **proj,
        "paper_a100_hours": PAPER_A100_HOURS[method],
        "lte_from_carried_cache": lte_from_cache,
        **lte_info,
    }


def worker_fashion(spec: dict, args: argparse.Namespace) -> dict:
    """The fashion_mnist preset's real ``fit()`` (the shipped teacher, the real test split carried to
    the machine) with ``spec["kernels"]``: top-1, summary.json's phases and the wall clock; with
    ``spec["project"]`` first ``time_phases`` on a separate trainer of the same preset and the
    projection of the whole preset from it, to set beside the measured wall clock.

    Raises:
        FileNotFoundError: no Fashion-MNIST test split (carried or in the standard places)."""
    root, data = fashion_root(Path(args.carry))
    lte, lte_info = lte_overrides("fashion_mnist", Path(args.carry), Path(args.scratch), args.dry_run)
    overrides = [
        f"run.kernels={spec['kernels']}",
        *([f"eval.root={root}"] if root else []),
        *lte,
        *(FASHION_DRY if args.dry_run else []),
    ]
    name = "fashion_mnist" + (" (dry-run sizes)" if args.dry_run else "")  # the recipe its fit() runs
    out: dict = {"kernels": spec["kernels"], "data": data, **lte_info}
    if spec.get("project"):
        trainer, cfg = _trainer("fashion_mnist", overrides + ["eval.dataset=none"], Path(args.scratch), "fashion_t")
        times = time_phases(trainer, TIMED_REPS, 4 if args.dry_run else 40, 1 if args.dry_run else 20)
        trainer.close()
        out.update(
            batch_s=times["adv"],
            warmup_batch_s=times["warm"],
            student_step_s=times["step"],
            **project(recipe_of(cfg, name), times, cfg.synthesis.num_generator_steps),
        )
    trainer, cfg = _trainer("fashion_mnist", overrides, Path(args.scratch), "fashion_fit")
    start = time.perf_counter()
    summary = trainer.fit()
    wall = time.perf_counter() - start
    out.update(
        recipe=recipe_of(cfg, name),
        recipe_source=RECIPE_SOURCE["fashion_mnist"],
        fit_wall_s=wall,
        fit_wall_hours=wall / 3600,
        kernels_resolved=trainer.kernel_backend,
        device=trainer.device_kind,
        resolved_precision=trainer.precision.to_dict(),
        summary=summary,
    )  # summary.json: top-1, the phases' seconds, device-hours
    return out


def worker_imagenet(spec: dict, args: argparse.Namespace) -> dict:
    """One ImageNet-shape condition of the imagenet_r50 preset (random-weight ResNet-50 teacher and
    student, synthesis batch 256 at 224 px): ``time_phases`` over ``IMAGENET_TIMED_STEPS`` generator
    steps per batch (scaled to the preset's), and the projection of the whole preset per process."""
    from benchmarks import imagenet_throughput

    full = recipe("imagenet_r50")
    lte, lte_info = lte_overrides("imagenet", Path(args.carry), Path(args.scratch), args.dry_run)
    timed_steps = 1 if args.dry_run else IMAGENET_TIMED_STEPS
    dry = imagenet_throughput.SMOKE + ["run.cpu_threads=1"] if args.dry_run else []
    trainer, cfg = _trainer(
        "imagenet_r50",
        [
            "teacher.weights=",
            "student.arch=tv_resnet50",
            "eval.dataset=none",
            _precision(spec["precision"]),
            f"run.compile={spec['compile']}",
            f"run.kernels={spec['kernels']}",
            "memory.cache=device",
            *dry,
            *lte,
            f"synthesis.num_generator_steps={timed_steps}",
        ],
        Path(args.scratch),
        "imagenet",
    )
    times = time_phases(trainer, TIMED_REPS, 1 if args.dry_run else 2, 1 if args.dry_run else 2)
    proj = project(full, times, timed_steps)
    s, d = cfg.synthesis, cfg.distill
    return {
        "condition": spec["label"],
        "precision": spec["precision"],
        "kernels": trainer.kernel_backend,
        "compile": spec["compile"],
        "student": cfg.student.arch,
        "image_size": cfg.teacher.image_size,
        "synthesis_batch": s.batch_size,
        "student_batch": d.batch_size,
        "timed_generator_steps": timed_steps,
        "batch_s": times["adv"],
        "student_step_s": times["step"],
        "synthesis_images_per_s": s.batch_size / proj["s_per_batch"],
        "generator_step_images_per_s": s.batch_size * full["steps_per_batch"] / proj["s_per_batch"],
        "student_images_per_s": d.batch_size / times["step"]["median_s"],
        "synthesis_peak_gb": times["synthesis_peak_gb"],
        "student_peak_gb": times["student_peak_gb"],
        "recipe": full,
        **proj,
        "projected_hours_per_process": proj["projected_hours"],
        "projected_gpu_hours_8": 8 * proj["projected_hours"],
        "device": trainer.device_kind,
        **lte_info,
    }


def run_worker(args: argparse.Namespace) -> int:
    """A worker process (``--worker cifar|fashion|imagenet --spec JSON``): measure one condition and
    append its ``<kind>_condition`` record (with the worker's wall seconds). Returns 0; raises on
    failure (the step records the exit status)."""
    spec = json.loads(args.spec)
    start = time.perf_counter()
    if args.dry_run:
        import torch

        torch.set_num_threads(1)
    fn = {"cifar": worker_cifar, "fashion": worker_fashion, "imagenet": worker_imagenet}[args.worker]
    result = fn(spec, args)
    append_record(
        Path(args.out),
        {
            "step": args.run_step,
            "kind": f"{args.worker}_condition",
            "label": spec["label"],
            "worker_s": round(time.perf_counter() - start, 1),
            **result,
        },
    )
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, default=str), flush=True)
    return 0
