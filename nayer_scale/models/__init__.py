"""Model zoo of CIFAR-style and torchvision-compatible ImageNet classifiers for any number of input
channels and classes.

``build_model(name, num_classes, in_channels=3)`` builds one of ``list_models()``:

- ``resnet8``, ``resnet20``, ``resnet32``, ``resnet56``: He et al., CVPR 2016 (CIFAR ResNets, 16/32/64 channels);
- ``resnet18``, ``resnet34``: the CIFAR ResNet-18/34 of DAFL / CMI / Fast-Datafree / NAYER (64-512 channels);
- ``wrn16_1``, ``wrn16_2``, ``wrn40_1``, ``wrn40_2``: Zagoruyko & Komodakis, BMVC 2016 (dropout 0);
- ``vgg11_bn``: Simonyan & Zisserman, ICLR 2015, configuration A with BatchNorm;
- ``tv_resnet18``, ``tv_resnet34``, ``tv_resnet50``: He et al., CVPR 2016, torchvision's ImageNet ResNets
  (7x7 stem + max-pool, v1.5 Bottlenecks);
- ``tv_mobilenet_v2``: Sandler et al., CVPR 2018, torchvision's MobileNetV2 (width 1.0, dropout 0.2).

Every model maps float (N, C, H, W) input, H, W >= 8, to (N, num_classes) logits, or to
``(logits, features)`` with ``forward(x, return_features=True)``, features (N, F) being the pooled
penultimate activations; ``get_classifier(model)`` returns its final nn.Linear. Module names follow the
published Fast-Datafree / NAYER code, so their CIFAR checkpoints load unchanged; the ``tv_*`` models have
torchvision's state_dict keys, so torchvision ImageNet weights (and timm ``*.tv_in1k`` files) load unchanged.

Files:

- ``registry``: ``register_model`` / ``build_model`` / ``list_models`` / ``get_classifier``; ``resnet_cifar``,
  ``wrn``, ``vgg``, ``imagenet``: the zoo's architectures (imported here, which registers them).
- ``io``: reading and writing model files: ``load_state_dict_file`` (wrappers and ``module.`` /
  ``_orig_mod.`` prefixes removed), ``save_model`` / ``read_metadata`` (safetensors with string metadata),
  ``save_model_folder`` (the nayer-scale model folder) and ``TeacherLoadError``.
- ``sources``: the registry of teacher sources (``teacher.arch``: a zoo name, ``package.module:factory``,
  ``torchvision:<name>``, ``timm:<name>``, ``hf:<hub id or folder>``; ``teacher.weights``: a local file,
  ``<Model>_Weights.<NAME>``, ``torchvision:...``, ``hf-hub:...``) and ``build_teacher`` /
  ``resolve_teacher``, which dispatch through it.
- ``inputs``: the one rule by which a source's input settings (normalisation, size, class names) meet
  a run's ``teacher.*`` fields.
- ``torchvision_teacher``, ``timm_teacher``: the torchvision and timm sources (the ``vision`` extra),
  and timm hub repositories, which load without timm for the zoo's ResNets.
- ``teacher``: the factories of zoo names and import paths and the checks every teacher passes (classifier
  width, key and shape match, BatchNorm layers); ``ResolvedTeacher``.
- ``hub``: hub weights (torchvision's by enum name or ``torchvision:`` spec, ``hf-hub:`` files), parsed
  before any download.
- ``hf``: hub-style model folders as teachers (transformers image classifiers, nayer-scale exports) and
  ``resolve_hf_teacher``, the ``teacher.*`` settings that such a folder fills.

Only the zoo is imported with the package; import the teacher modules by name
(``from nayer_scale.models.sources import build_teacher``).
"""

from . import imagenet, resnet_cifar, vgg, wrn  # noqa: F401  (registration)
from .registry import build_model, get_classifier, list_models, register_model

__all__ = ["build_model", "get_classifier", "list_models", "register_model"]
