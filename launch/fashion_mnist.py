"""NAYER on Fashion-MNIST: a ResNet-20 teacher (trained by launch/train_teacher.py) distilled into a
ResNet-8 student with no training image, evaluated on the 10,000 real test images.

    python launch/train_teacher.py                      # once; cached
    accelerate launch launch/fashion_mnist.py           # one process (CPU or one GPU)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no launch/fashion_mnist.py   # 2 CPU processes (gloo)
    accelerate launch launch/fashion_mnist.py run.epochs=40 run.run_dir=runs/fm40   # overrides

Any field of nayer_scale.config can be overridden as section.key=value.
"""

from nayer_scale.cli import run_and_exit  # launch/distill.py under the demo's name (same default preset)

if __name__ == "__main__":
    run_and_exit("fashion_mnist", command="distill")
