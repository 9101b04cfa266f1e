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
