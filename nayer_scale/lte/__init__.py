"""Label-text embedding (LTE) pool of NAYER (Tran et al., CVPR 2024, Sec. 3).

Each class name becomes a prompt (``"a photo of a {name}"``), which a pretrained text encoder
(all-MiniLM-L6-v2, Reimers & Gurevych 2019, offline by default; or CLIP's text tower, Radford et al.
2021) embeds ONCE; the resulting fixed ``(K, D)`` matrix conditions the generator. The pool is cached
on disk, so a cached pool loads without the encoder.

    >>> from nayer_scale.lte import get_class_names, load_or_build_lte
    >>> lte = load_or_build_lte(get_class_names("cifar10"), "minilm", "photo_of", "~/.cache/nayer-scale/lte")
    >>> lte.shape
    torch.Size([10, 384])
"""

from .classnames import DATASETS, get_class_names, resolve_class_names
from .encoders import CLIPTextEncoder, HashedBagOfWordsEncoder, MiniLMEncoder, TextEncoder, build_text_encoder
from .pool import PROMPT_TEMPLATES, build_prompts, load_lte_file, load_or_build_lte, lte_cache_key

__all__ = [
    "DATASETS",
    "get_class_names",
    "resolve_class_names",
    "TextEncoder",
    "HashedBagOfWordsEncoder",
    "MiniLMEncoder",
    "CLIPTextEncoder",
    "build_text_encoder",
    "PROMPT_TEMPLATES",
    "build_prompts",
    "lte_cache_key",
    "load_or_build_lte",
    "load_lte_file",
]
