"""Data-free distillation with any preset: NAYER or a baseline (DeepInversion, Fast), any dataset.
The one entry point behind launch/fashion_mnist.py and launch/imagenet_r50.py (same code, another
default preset).

    accelerate launch launch/distill.py                                      # preset fashion_mnist
    accelerate launch launch/distill.py preset=fashion_mnist_deepinversion
    accelerate launch launch/distill.py preset=fashion_mnist_fast run.epochs=60 run.run_dir=runs/fast60
    accelerate launch --multi_gpu --num_processes 8 launch/distill.py preset=cifar10 \
        teacher.weights=/path/wrn40_2.pth eval.dataset=cifar10 eval.root=/path/to/cifar
    accelerate launch launch/distill.py preset=imagenet_r50                  # = launch/imagenet_r50.py

Presets (nayer_scale.config.PRESETS): fashion_mnist[_deepinversion|_fast], cifar10[_deepinversion|_fast],
cifar100[_deepinversion|_fast], tiny_imagenet, imagenet_r50[_r18|_mbv2|_smoke]. Any field can be
overridden as section.key=value; errors are one line (``--debug`` or NAYER_DEBUG=1: the traceback).
"""

from nayer_scale.cli import run_and_exit

if __name__ == "__main__":
    run_and_exit("fashion_mnist", command="distill")
