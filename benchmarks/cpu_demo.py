"""The Fashion-MNIST demo's trainer, set up for timing single steps on CPU (shared by
benchmarks/precision_cpu.py and benchmarks/profile_cpu.py)."""

from __future__ import annotations

from pathlib import Path


def demo_trainer(tmp: str | Path, overrides: list[str], smoke: bool = False):
    """A ``NayerTrainer`` of the ``fashion_mnist`` preset with a random-weight ResNet-20 teacher
    (speed does not depend on the weights) and no eval set, its memory bank holding one synthesis
    batch. ``overrides`` are ``section.key=value`` strings; ``smoke`` shrinks the batches and uses
    the weight-free hashed text encoder.

    Returns:
        (trainer, epoch, student_epoch): ``epoch`` is the first one after warm-up (the adversarial
        term is on); ``student_epoch()`` runs one epoch's ``distill.steps_per_epoch`` student steps.
    """
    from nayer_scale.config import apply_overrides
    from nayer_scale.models import build_model
    from nayer_scale.models.io import save_model
    from nayer_scale.recipes import get_preset
    from nayer_scale.trainer import NayerTrainer

    teacher = Path(tmp) / "teacher.safetensors"
    save_model(build_model("resnet20", num_classes=10, in_channels=1), teacher)
    base = [
        f"teacher.weights={teacher}",
        "eval.dataset=none",
        f"run.run_dir={tmp}/run",
        "run.resume=false",
        "run.progress=false",
    ]
    small = ["synthesis.batch_size=20", "distill.batch_size=8", "lte.encoder=hashed:64"] if smoke else []
    cfg = apply_overrides(get_preset("fashion_mnist"), base + overrides + small).validate()
    trainer = NayerTrainer(cfg)
    epoch = cfg.run.warmup_epochs
    trainer.synthesize_batch(epoch, 0)  # the memory bank's one synthesis batch

    def student_epoch():
        trainer.distill_steps(cfg.distill.steps_per_epoch)

    return trainer, epoch, student_epoch
