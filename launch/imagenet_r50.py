"""NAYER on ImageNet: a ResNet-50 teacher distilled without data into ResNet-50 (default), ResNet-18
or MobileNetV2, on one GPU, one node or many.

    # one GPU
    accelerate launch launch/imagenet_r50.py
    # 8 GPUs of one node (DDP; add eval.dataset=imagenet eval.root=/data/imagenet/val for top-1)
    accelerate launch --config_file launch/accelerate/multi_gpu.yaml launch/imagenet_r50.py
    # DeepSpeed ZeRO-2 for the student, 8 GPUs
    accelerate launch --config_file launch/accelerate/deepspeed_zero2.yaml launch/imagenet_r50.py
    # 4 nodes x 8 GPUs: on every node (or let launch/slurm/imagenet_r50.sbatch build this line)
    accelerate launch --config_file launch/accelerate/multi_node.yaml --num_machines 4 \
        --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR --main_process_port 29500 \
        --num_processes 32 launch/imagenet_r50.py run.run_dir=/shared/runs/imagenet_r50
    # students and the CPU smoke run of this exact code path
    accelerate launch launch/imagenet_r50.py preset=imagenet_r50_r18
    accelerate launch launch/imagenet_r50.py preset=imagenet_r50_mbv2
    accelerate launch --cpu launch/imagenet_r50.py preset=imagenet_r50_smoke

Presets: imagenet_r50 (default), imagenet_r50_r18, imagenet_r50_mbv2, imagenet_r50_smoke; any field
can be overridden as section.key=value (e.g. teacher.weights=/path/resnet50-0676ba61.pth on an
offline machine; the default torchvision:resnet50.IMAGENET1K_V1 downloads once when online).

run.run_dir (memory-bank shards, checkpoints, logs) must be on a file system every node sees.
SIGTERM or SIGUSR1 to any process checkpoints every process at the next safe point and exits 0
without a summary.json; the same command continues the run (resume is on by default here).
"""

from nayer_scale.cli import run_and_exit  # = launch/distill.py preset=imagenet_r50 (the SLURM script runs this file)

if __name__ == "__main__":
    run_and_exit("imagenet_r50", command="distill")
