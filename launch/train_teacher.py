"""Train a teacher on the real Fashion-MNIST training set: the ONLY code in this project that reads
training images. Data-free distillation (launch/fashion_mnist.py) never does.

    python launch/train_teacher.py                     # resnet20, 8 epochs -> runs/teacher/...
    python launch/train_teacher.py --epochs 10 --force

The result is cached: a file whose stored training settings match is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from nayer_scale.augment import BatchAugment  # noqa: E402
from nayer_scale.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist  # noqa: E402
from nayer_scale.models import build_model  # noqa: E402
from nayer_scale.teacher import read_metadata, save_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST *-ubyte.gz files")
    p.add_argument("--out", default="runs/teacher/fashion_mnist_resnet20.safetensors")
    p.add_argument("--force", action="store_true", help="retrain even if a matching file exists")
    return p.parse_args(argv)


def train(args) -> float:
    acc = Accelerator(mixed_precision=args.mixed_precision)
    torch.manual_seed(args.seed)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force", "data_root")}
    if not args.force and os.path.isfile(args.out):
        meta = read_metadata(args.out)
        if json.loads(meta.get("train_settings", "{}")) == settings:
            acc.print(f"teacher cached: {args.out} (test top-1 {meta.get('test_top1')})")
            return float(meta.get("test_top1", "nan"))
    train_x, train_y = load_fashion_mnist("train", args.data_root)
    test_x, test_y = load_fashion_mnist("test", args.data_root)
    model = build_model(args.arch, num_classes=10, in_channels=1).to(acc.device)
    steps = args.epochs * (len(train_y) // args.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    augment = BatchAugment(FASHION_MNIST_MEAN, FASHION_MNIST_STD, padding=2, flip=True).to(acc.device)
    train_x, train_y = train_x.to(acc.device), train_y.to(acc.device)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_y), device=acc.device)
        for i in range(len(train_y) // args.batch_size):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x = augment(train_x[idx].float() / 255.0)
            with acc.autocast():
                loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            opt.step()
            sched.step()
        top1 = evaluate(model, augment, test_x.to(acc.device), test_y.to(acc.device), acc)
        acc.print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, test top-1 {top1:.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {"arch": args.arch, "num_classes": "10", "in_channels": "1", "image_size": "28",
            "mean": json.dumps(FASHION_MNIST_MEAN), "std": json.dumps(FASHION_MNIST_STD),
            "class_names": json.dumps(FASHION_MNIST_CLASSES), "test_top1": f"{top1:.4f}",
            "train_settings": json.dumps(settings)}
    tmp = args.out + ".tmp"
    save_model(model, tmp, meta)
    os.replace(tmp, args.out)
    acc.print(f"teacher saved: {args.out} (test top-1 {top1:.4f}, {time.perf_counter() - start:.0f} s)")
    return top1


@torch.no_grad()
def evaluate(model, augment, x, y, acc) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 1000):
        with acc.autocast():
            correct += (model(augment.normalize(x[i : i + 1000].float() / 255.0)).argmax(1) == y[i : i + 1000]).sum().item()
    return correct / len(y)


if __name__ == "__main__":
    train(parse_args())
