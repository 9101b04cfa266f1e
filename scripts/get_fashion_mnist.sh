#!/usr/bin/env bash
# Make the Fashion-MNIST files available (used for the teacher's training and for evaluation only).
# 1. already present in a searched folder -> nothing to do;
# 2. Debian/Ubuntu: the package dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist;
# 3. otherwise: download the four files of github.com/zalandoresearch/fashion-mnist into
#    ~/.cache/nayer-scale/fashion-mnist (or $NAYER_FASHION_MNIST).
set -euo pipefail
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
have_all() { for f in $files; do [ -f "$1/$f" ] || return 1; done; }
for d in "${NAYER_FASHION_MNIST:-}" /usr/share/datasets/fashion-mnist "$HOME/.cache/nayer-scale/fashion-mnist"; do
  if [ -n "$d" ] && have_all "$d"; then echo "Fashion-MNIST found in $d"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist (31 MB) with apt-get..."
  if $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist; then
    have_all /usr/share/datasets/fashion-mnist && { echo "Fashion-MNIST installed by apt"; exit 0; }
  fi
  echo "apt-get could not install dataset-fashion-mnist; trying the download" >&2
fi
dest="${NAYER_FASHION_MNIST:-$HOME/.cache/nayer-scale/fashion-mnist}"
mkdir -p "$dest"
echo "Fashion-MNIST: downloading the four files (30 MB) into $dest..."
base="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
for f in $files; do
  if [ ! -f "$dest/$f" ]; then
    curl -fL --retry 3 -o "$dest/$f.part" "$base/$f"
    mv "$dest/$f.part" "$dest/$f"
  fi
done
have_all "$dest" && echo "Fashion-MNIST downloaded to $dest"
