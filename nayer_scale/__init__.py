"""nayer-scale: data-free knowledge distillation with NAYER (Tran et al., CVPR 2024).

Where things live:
  nayer_scale.lte        label-text embedding (LTE) pool: class names, prompts, text encoders, cache
  nayer_scale.synthesis  noisy layer, generators, teacher BN-statistics hooks, synthesis methods (NAYER,
                         DeepInversion, Fast)
  nayer_scale.losses     adversarial / KD losses and image priors (pure functions)
  nayer_scale.metrics    diversity of synthetic batches, convergence epoch, LTE nearest classes
  nayer_scale.memory     memory bank on sharded WebDataset tar files
  nayer_scale.models     model zoo (CIFAR-style ResNets, WRNs, VGG; torchvision-compatible ImageNet nets) and
                         teachers: model files (models.io), the registry of teacher sources with
                         bring-your-own-teacher loading and early, clear errors (models.sources, models.teacher),
                         hub weights (models.hub), hub-style model folders hf:... (models.hf)
  nayer_scale.trainer    the Accelerate-driven trainer (synthesize, distill, evaluate, checkpoint, fit)
  nayer_kernels          (folder kernels/) fused kernels and their pure-PyTorch references
"""

__version__ = "0.1.0"

# (nayer_scale.api.trainer builds a NayerTrainer without running it: the name ``trainer`` here is
# the module nayer_scale.trainer)
__all__ = ["NayerConfig", "NayerTrainer", "__version__", "distill", "get_preset"]

_API = {
    "NayerConfig": "nayer_scale.config",
    "get_preset": "nayer_scale.recipes",
    "distill": "nayer_scale.api",
    "NayerTrainer": "nayer_scale.trainer",
}


def __getattr__(name: str):
    """The public API, imported on first use (``import nayer_scale`` stays light)::

    from nayer_scale import NayerConfig, get_preset, distill
    summary = distill("fashion_mnist", ["run.epochs=2"])
    """
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'nayer_scale' has no attribute {name!r}")
