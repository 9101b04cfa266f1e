"""Data-free distillation with any preset: NAYER or a baseline (DeepInversion, Fast), any dataset.

    accelerate launch launch/distill.py preset=fashion_mnist_deepinversion
    accelerate launch launch/distill.py preset=fashion_mnist_fast run.epochs=60 run.run_dir=runs/fast60
    accelerate launch --multi_gpu --num_processes 8 launch/distill.py preset=cifar10 \
        teacher.weights=/path/wrn40_2.pth eval.dataset=cifar10 eval.root=/path/to/cifar

Presets (nayer_scale.config.PRESETS): fashion_mnist[_deepinversion|_fast], cifar10[_deepinversion|_fast],
cifar100[_deepinversion|_fast], tiny_imagenet. Any field can be overridden as section.key=value.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nayer_scale.cli import run_and_exit  # noqa: E402

if __name__ == "__main__":
    run_and_exit("fashion_mnist")
