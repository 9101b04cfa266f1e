"""Named recipes (presets), apart from the library as torchtitan keeps its recipes: the registry and
the config composition (``registry``), the published hyper-parameters the dataset recipes share
(``published``), the Table 2 baselines (``baselines``) and one module per dataset family.

    from nayer_scale.recipes import get_preset
    cfg = get_preset("cifar10")
"""

# Each module registers its presets; this order is the order of ``PRESETS`` (the demo first).
from . import fashion_mnist  # noqa: F401, I001
from . import cifar  # noqa: F401
from . import imagenet  # noqa: F401
from .baselines import as_deepinversion, as_fast
from .registry import PRESETS, compose_config, get_preset, preset, preset_parents

__all__ = ["PRESETS", "as_deepinversion", "as_fast", "compose_config", "get_preset", "preset", "preset_parents"]
