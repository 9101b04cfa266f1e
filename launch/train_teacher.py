"""Train a teacher on the real Fashion-MNIST training set: the ONLY code in this project that reads
training images. Data-free distillation (launch/fashion_mnist.py) never does.

The project ships the teacher this script trains with its default settings
(``nayer_scale/assets/fashion_mnist_resnet20.safetensors``, used by the ``fashion_mnist`` preset),
so the demo needs no training; this script reproduces it:

    python launch/train_teacher.py                     # resnet20, 8 epochs -> runs/teacher/...
    python launch/train_teacher.py --out nayer_scale/assets/fashion_mnist_resnet20.safetensors --force
    accelerate launch launch/fashion_mnist.py teacher.weights=runs/teacher/fashion_mnist_resnet20.safetensors

The result is cached: a file whose stored training settings match is reused. Precision is chosen by
the hardware (``--mixed-precision auto``, see nayer_scale.precision); the file's metadata and the
JSON record next to it hold the settings, the precision that ran, the commit and the test top-1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nayer_scale.augment import BatchAugment
from nayer_scale.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    load_fashion_mnist,
    tensor_eval_source,
)
from nayer_scale.evaluation import Evaluator
from nayer_scale.models import build_model
from nayer_scale.models.io import read_metadata, save_model
from nayer_scale.precision import describe_device, resolve_precision
from nayer_scale.storage import atomic_path, atomic_write_text

# Arguments that only say where things are, not what is trained: left out of the recorded settings.
NOT_SETTINGS = ("out", "force", "data_root")


def parse_args(argv=None):
    """The training settings (defaults = the shipped teacher's) and where things are."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument(
        "--mixed-precision",
        default="auto",
        choices=["auto", "no", "bf16", "fp16"],
        help="auto: bf16 where the GPU / CPU runs it natively, fp16 on GPUs without bf16, else fp32",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST *-ubyte.gz files")
    p.add_argument("--out", default="runs/teacher/fashion_mnist_resnet20.safetensors")
    p.add_argument("--force", action="store_true", help="retrain even if a matching file exists")
    return p.parse_args(argv)


def training_settings(args) -> dict:
    """What determines the trained teacher: every argument except the output / data locations."""
    return {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}


def _commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _record(args, precision, top1: float, wall: float, device: torch.device) -> dict[str, str]:
    """The metadata stored in the teacher file (and the JSON beside it): what the model is, its
    test top-1, the training settings, the precision that ran, commit, torch, wall time, device."""
    return {
        "arch": args.arch,
        "num_classes": "10",
        "in_channels": "1",
        "image_size": "28",
        "mean": json.dumps(FASHION_MNIST_MEAN),
        "std": json.dumps(FASHION_MNIST_STD),
        "class_names": json.dumps(FASHION_MNIST_CLASSES),
        "test_top1": f"{top1:.4f}",
        "train_settings": json.dumps(training_settings(args)),
        "precision": json.dumps(precision.to_dict()),
        "commit": _commit(),
        "torch": torch.__version__,
        "train_wall_s": f"{wall:.0f}",
        "threads": str(torch.get_num_threads()),
        "device": describe_device(device),
    }


def _cached_top1(args) -> float | None:
    """The test top-1 stored in ``args.out`` when that file was trained with these settings (and
    --force is not given); None when the teacher must be trained."""
    if args.force or not os.path.isfile(args.out):
        return None
    meta = read_metadata(args.out)
    if json.loads(meta.get("train_settings", "{}")) != training_settings(args):
        return None
    print(f"teacher cached: {args.out} (test top-1 {meta.get('test_top1')})")
    return float(meta.get("test_top1", "nan"))


def _save(out: str, model: torch.nn.Module, record: dict[str, str]) -> None:
    """The teacher as safetensors with ``record`` as metadata (fsync'ed temporary file renamed into
    place), and the same record as JSON beside it, written the same way."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out) as tmp:
        save_model(model, tmp, record)
    readable = {k: (json.loads(v) if k in ("train_settings", "precision") else v) for k, v in record.items()}
    atomic_write_text(os.path.splitext(out)[0] + ".json", json.dumps(readable, indent=2) + "\n")


def train(args) -> float:
    """Train (or reuse) the teacher; returns its test top-1 (fraction)."""
    cached = _cached_top1(args)
    if cached is not None:
        return cached
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(args.mixed_precision, "auto", device)
    print(
        f"training {args.arch} on {device} ({torch.get_num_threads()} threads), precision "
        f"{precision.mixed_precision}, channels_last {precision.channels_last} ({precision.reason})",
        flush=True,
    )
    torch.manual_seed(args.seed)
    train_x, train_y = load_fashion_mnist("train", args.data_root)
    test_x, test_y = load_fashion_mnist("test", args.data_root)
    model = build_model(args.arch, num_classes=10, in_channels=1).to(device)
    memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    steps_per_epoch = len(train_y) // args.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    scaler = precision.grad_scaler()
    augment = BatchAugment(FASHION_MNIST_MEAN, FASHION_MNIST_STD, padding=2, flip=True).to(device)
    # the real test split in batches of 1000 (top-1 does not depend on the batch), channels_last as trained
    evaluate = Evaluator(tensor_eval_source(test_x, test_y, 1000, device=device), augment.normalize, precision, device)
    train_x, train_y = train_x.to(device), train_y.to(device)
    start = time.perf_counter()
    bar = tqdm(total=args.epochs * steps_per_epoch, desc="teacher", unit="step", dynamic_ncols=True)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_y), device=device)
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x = augment(train_x[idx].float() / 255.0).contiguous(memory_format=memory_format)
            with precision.autocast():
                loss = F.cross_entropy(model(x).float(), train_y[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            bar.update()
        top1 = evaluate(model).top1
        bar.set_postfix(epoch=f"{epoch + 1}/{args.epochs}", loss=f"{loss.item():.3f}", test_top1=f"{top1:.4f}")
        bar.write(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, test top-1 {top1:.4f}, "
            f"{time.perf_counter() - start:.0f} s"
        )
    bar.close()
    wall = time.perf_counter() - start
    _save(args.out, model.to(memory_format=torch.contiguous_format), _record(args, precision, top1, wall, device))
    print(f"teacher saved: {args.out} (test top-1 {top1:.4f}, {wall:.0f} s)")
    return top1


if __name__ == "__main__":
    train(parse_args())
