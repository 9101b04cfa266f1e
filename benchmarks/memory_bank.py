"""Is the memory bank ever the bottleneck? Student-step data wait, read throughput and node memory
for each cache mode, 1 and 2 processes, 32 px and 224 px banks; bytes and decode rate per encoding.

    python -m benchmarks.memory_bank                      # the committed measurement (~10 min on 2 cores)
    python -m benchmarks.memory_bank --smoke              # tiny sizes: checks the script
    python -m benchmarks.memory_bank --compute fashion_mnist --sizes 32:100000 --batch 32 --append --tables data_wait
    python -m benchmarks.memory_bank --tables host_alloc --append   # batch buffers: torch.empty vs host_empty

For every (image size, cache mode, processes) the script builds a bank of ``N`` images (written
once, raw encoding, shards of 256 images, in ``--work-dir``), then each process runs ``--steps``
student steps: it takes the next batch from ``MemoryBank.batches`` (prefetch ``--prefetch``
batches ahead) and "computes" for the step time. ``data_wait_frac`` is the time spent waiting for
batches over the total step time, in steady state (steps 2 to N; the first batch of an epoch
waits for the pipeline to fill, reported as ``first_batch_wait_s``: once per epoch). The compute step is either emulated (``sleep:SECONDS``: a GPU
step leaves the host CPU free; 0.08 s for 256 images at 224 px stands for a ResNet-50 step on an
H100 in bf16; the batches are then delivered as the stored uint8, as a GPU run's host side
delivers them, since the conversion to float runs on the GPU) or real (``fashion_mnist``: a KD step
of a ResNet-8 student on a ResNet-20 teacher on this CPU, on float32 batches converted by the
prefetching thread, which competes with the step for the cores). Read throughput is
measured separately, without compute, as images/s and MB/s of a tight ``batches`` loop. Node memory
is the processes' proportional set size (PSS: a page shared by k processes counts 1/k) without
shared-memory pages, plus the node cache's files in /dev/shm (memory whether mapped or not),
measured by all processes at once (between two barriers) after they cached the bank
(``node_mem_MB``) and before (``node_mem_before_MB``: their fixed footprint), so "one copy per node"
reads as ``cache_copies_per_node`` = (node_mem - before) / bank ~ 1. ``node_mem_running_MB`` is
measured again at the end, with the prefetched batches in flight.

The encoding table stores real Fashion-MNIST test images (28 px grey, padded to 32; and the same
upsampled to 224 px RGB, a smooth-image proxy) and uniform noise (incompressible, the worst case)
with every encoding and reports bytes per image and decoded images/s on one core. The host_alloc
table times allocating and first writing one batch buffer with ``torch.empty`` and with the
bank's ``host_empty`` (and counts the page faults): fresh pages cost the gather more than copying.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.multiprocessing as mp

from benchmarks.lib.provenance import add_common_args, command_line, provenance, results_dir, write_csv
from benchmarks.lib.report import write_report
from nayer_scale.memory import MemoryBank, batch_seed, shards
from nayer_scale.memory.node_cache import NodeFiles

SHARD = 256


def build_bank(root: Path, n: int, size: int, channels: int) -> None:
    """Write ``n`` random uint8 images in shards of 256 (reused when already there)."""
    if (root / "manifest-r000.json").is_file():
        return
    bank = MemoryBank(root, cache="none")
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, SHARD):
        k = min(SHARD, n - start)
        bank.write(
            torch.randint(0, 256, (k, channels, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (k,), generator=g),
        )
    bank.close()


def private_pss_bytes() -> int:
    """This process's proportional set size without its share of shared-memory pages, in bytes
    (Linux ``/proc/self/smaps_rollup``: Pss - Pss_Shmem; elsewhere psutil's PSS). The node cache's
    files in /dev/shm are counted once, by size: they hold memory whether or not a
    process has touched (mapped) their pages, by ``NodeFiles.nbytes``."""
    rollup = Path("/proc/self/smaps_rollup")
    if not rollup.is_file():
        return psutil.Process().memory_full_info().pss
    kb = {line.split()[0].rstrip(":"): int(line.split()[1]) for line in rollup.read_text().splitlines()[1:]}
    return 1024 * (kb["Pss"] - kb.get("Pss_Shmem", 0))


def make_compute(spec: str, batch: int, size: int):
    """A callable images -> None that takes one student step's time (see module docstring)."""
    if spec.startswith("sleep:"):
        seconds = float(spec.split(":", 1)[1])
        return lambda images: time.sleep(seconds)
    if spec != "fashion_mnist":
        raise SystemExit(f"--compute must be sleep:SECONDS or fashion_mnist, got {spec}")
    from nayer_scale.losses import kd_loss
    from nayer_scale.models import build_model

    teacher, student = build_model("resnet20", 10, 1).eval(), build_model("resnet8", 10, 1)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)

    def step(images: torch.Tensor) -> None:
        x = images[:, :1, :28, :28]
        with torch.no_grad():
            t = teacher(x)
        loss = kd_loss(student(x), t, 20.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def worker(rank: int, world: int, root: str, cache: str, args: dict, out: dict, barrier) -> None:
    """One process: load the bank in ``cache``, measure throughput and data wait, and node memory
    (every process measures between two barriers, so all of them hold their caches meanwhile)."""
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    os.environ["NAYER_SHM_DIR"] = args["shm"]

    def memory() -> dict:
        barrier.wait()
        shm = NodeFiles(root, args["shm"]).nbytes() if rank == 0 else 0  # this bank's node-cache files
        mem = {"private": private_pss_bytes(), "shm": shm}
        barrier.wait()
        return mem

    before = memory()
    bank = MemoryBank(root, rank=rank, world_size=world, cache=cache, read_threads=args["read_threads"])
    bank.refresh()
    cached = memory()
    batch, steps = args["batch"], args["steps"]
    seeds = [batch_seed(0, rank, 0, s) for s in range(steps)]
    start = time.perf_counter()
    # An emulated GPU step takes the stored uint8 batch (in a real run it is converted on the GPU);
    # the real CPU step takes float32 in [0, 1], converted by the prefetching thread.
    dtype = None if args["compute"].startswith("sleep:") else torch.float32
    for _ in bank.batches(batch, seeds[: max(4, steps // 2)], args["prefetch"], dtype):
        pass
    read_s = time.perf_counter() - start
    n_read = max(4, steps // 2) * batch
    compute = make_compute(args["compute"], batch, args["size"])
    wait = total = first = 0.0
    it = iter(bank.batches(batch, seeds, args["prefetch"], dtype))
    for step in range(steps):
        t0 = time.perf_counter()
        images, _ = next(it)
        t1 = time.perf_counter()
        compute(images)
        t2 = time.perf_counter()
        if step == 0:  # fills the pipeline: once per epoch in a run (500 steps per epoch for ImageNet)
            first = t1 - t0
        else:
            wait, total = wait + (t1 - t0), total + (t2 - t0)
    running = memory()  # the prefetch pipeline is full here: its batches in flight count
    out[rank] = {
        "wait": wait,
        "total": total,
        "first": first,
        "read_s": read_s,
        "n_read": n_read,
        "before": before,
        "cached": cached,
        "running": running,
        "len": len(bank),
    }
    del it
    bank.close()


def measure(root: Path, cache: str, world: int, args: dict) -> dict:
    """Run ``worker`` in ``world`` fresh processes (also for 1) on the bank ``root`` with ``cache``;
    returns each rank's measurements by rank."""
    with mp.Manager() as manager:
        out = manager.dict()
        # fresh processes, also for 1
        mp.spawn(worker, args=(world, str(root), cache, args, out, manager.Barrier(world)), nprocs=world)
        return dict(out)


def encoding_rows(smoke: bool) -> list[dict]:
    """Bytes per image and decode images/s (one core) of each encoding on real and noise images."""
    from nayer_scale.data import fashion_mnist

    torch.set_num_threads(1)
    try:
        real = fashion_mnist.load_fashion_mnist("test")[0][: 64 if smoke else 512]
    except Exception as err:  # noqa: BLE001 - benchmark: report what is missing and go on
        print(f"Fashion-MNIST not found ({err}); encoding table on noise only", file=sys.stderr)
        real = None
    sets = {}
    if real is not None:
        grey = torch.nn.functional.pad(real, (2, 2, 2, 2))  # (N, 1, 32, 32) uint8
        sets["fashion_mnist_32px_grey"] = grey.numpy()
        big = torch.nn.functional.interpolate(grey.float(), size=224, mode="bilinear").round().clamp(0, 255)
        sets["fashion_mnist_224px_rgb_upsampled"] = big.to(torch.uint8).expand(-1, 3, -1, -1).numpy()[:64]
    g = np.random.default_rng(0)
    sets["noise_32px_rgb"] = g.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8)
    sets["noise_224px_rgb"] = g.integers(0, 256, (32 if smoke else 64, 3, 224, 224), dtype=np.uint8)
    rows = []
    for name, images in sets.items():
        channels = images.shape[1]
        for encoding in ("raw", "png", "webp"):
            blobs = [shards.encode_image(im, encoding) for im in images]
            suffix = shards.ENCODINGS[encoding]
            start = time.perf_counter()
            for blob in blobs:
                shards.decode_image(blob, suffix, channels)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "table": "encoding",
                    "images": name,
                    "encoding": encoding,
                    "bytes_per_image": round(sum(map(len, blobs)) / len(blobs)),
                    "raw_bytes_per_image": int(np.prod(images.shape[1:])),
                    "decode_images_per_s_1core": round(len(blobs) / seconds),
                }
            )
    return rows


def host_alloc_rows(batch: int, repeats: int) -> list[dict]:
    """Milliseconds and minor page faults to allocate one batch buffer and write it once, with
    ``torch.empty`` and with ``nayer_scale.memory.sampler.host_empty`` (numpy: transparent huge
    pages where Linux grants them), at 32 and 224 px; the median of ``repeats``."""
    import resource

    from nayer_scale.memory.sampler import host_empty

    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    thp = setting.read_text().strip() if setting.is_file() else "n/a"
    rows = []
    for size in (32, 224):
        shape = (batch, 3, size, size)
        for name, alloc in (
            ("torch.empty", lambda: torch.empty(shape, dtype=torch.uint8)),
            ("host_empty", lambda: host_empty(shape)),
        ):
            times, faults = [], []
            for _ in range(repeats):
                f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                alloc().fill_(1)
                times.append(time.perf_counter() - t0)
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
            rows.append(
                {
                    "table": "host_alloc",
                    "image_px": size,
                    "batch": batch,
                    "allocator": name,
                    "batch_MB": round(float(np.prod(shape)) / 1e6, 1),
                    "alloc_write_ms": round(1e3 * float(np.median(times)), 2),
                    "page_faults": int(np.median(faults)),
                    "thp": thp,
                }
            )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); --smoke shrinks the sizes, steps and batch."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["32:100000", "224:8000"],
        metavar="PX:IMAGES",
        help="bank image size and number of images (default: 32 px x 100k, 224 px x 8k)",
    )
    p.add_argument("--caches", nargs="+", default=["device", "node", "none"], choices=["device", "cpu", "node", "none"])
    p.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--prefetch", type=int, default=2)
    p.add_argument("--read-threads", type=int, default=8)
    p.add_argument("--compute", default="sleep:0.08", help="sleep:SECONDS (emulated GPU step) or fashion_mnist")
    p.add_argument(
        "--tables",
        nargs="+",
        default=["data_wait", "encoding", "host_alloc"],
        choices=["data_wait", "encoding", "host_alloc"],
        help="which measurements (default: all)",
    )
    p.add_argument("--no-encodings", action="store_true", help="the same as leaving encoding out of --tables")
    p.add_argument("--append", action="store_true", help="add rows to the existing CSV (another --compute)")
    add_common_args(
        p, "work_dir", "results_dir", "smoke", work_dir=os.path.join(tempfile.gettempdir(), "nayer-bank-bench")
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.steps, args.batch = ["32:600", "64:300"], 4, 32
    return args


def data_wait_row(root: Path, size: int, n: int, cache: str, world: int, args: argparse.Namespace, shm: str) -> dict:
    """One (bank, cache, processes) measurement of ``worker`` as a CSV row: the step time, the share
    of it spent waiting for batches, the first batch's wait, the read throughput and node memory."""
    bank_bytes = n * 3 * size * size
    conf = {
        "batch": args.batch,
        "steps": args.steps,
        "prefetch": args.prefetch,
        "size": size,
        "read_threads": args.read_threads,
        "compute": args.compute,
        "shm": shm,
    }
    res = measure(root, cache, world, conf)
    wait = sum(r["wait"] for r in res.values())
    total = sum(r["total"] for r in res.values())
    read_rate = sum(r["n_read"] / r["read_s"] for r in res.values())

    def node(point: str) -> int:  # processes' private PSS + the node cache's files
        return sum(r[point]["private"] + r[point]["shm"] for r in res.values())

    base, node_mem, running = node("before"), node("cached"), node("running")
    return {
        "table": "data_wait",
        "image_px": size,
        "bank_images": n,
        "bank_MB": round(bank_bytes / 1e6),
        "cache": cache,
        "processes": world,
        "batch": args.batch,
        "prefetch": args.prefetch,
        "compute": args.compute,
        "step_s": round(total / (world * (args.steps - 1)), 4),
        "data_wait_frac": round(wait / total, 4),
        "first_batch_wait_s": round(max(r["first"] for r in res.values()), 3),
        "read_images_per_s": round(read_rate),
        "read_MB_per_s": round(read_rate * 3 * size * size / 1e6),
        "node_mem_MB": round(node_mem / 1e6),
        "node_mem_before_MB": round(base / 1e6),
        "cache_copies_per_node": round((node_mem - base) / bank_bytes, 2),
        "node_mem_running_MB": round(running / 1e6),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure the --tables, append each row to memory_bank.csv at once, then render memory_bank.md."""
    args = parse_args(argv)
    out_dir = results_dir(args, "memory_bank")
    name = "memory_bank_smoke" if args.smoke else "memory_bank"
    csv_path, fields = out_dir / f"{name}.csv", provenance(command=command_line(argv))
    if csv_path.exists() and not args.append:
        csv_path.unlink()
    work = Path(args.work_dir)
    shm = str(work / "shm" if args.smoke else Path("/dev/shm"))  # where the node cache lives
    for spec in args.sizes if "data_wait" in args.tables else []:
        size, n = map(int, spec.split(":"))
        root = work / f"bank-{size}px-{n}"
        build_bank(root, n, size, 3)
        for cache in args.caches:
            for world in args.processes:
                row = data_wait_row(root, size, n, cache, world, args, shm)
                print(row, flush=True)
                write_csv(csv_path, [row], append=True, fields=fields)
                NodeFiles(root, shm).remove_all()  # the next measurement starts without it
    if "encoding" in args.tables and not args.no_encodings:
        write_csv(csv_path, encoding_rows(args.smoke), append=True, fields=fields)
    if "host_alloc" in args.tables:
        write_csv(csv_path, host_alloc_rows(args.batch, 3 if args.smoke else 20), append=True, fields=fields)
    md = write_report(csv_path, plots=False)
    print(f"wrote {csv_path} and {md}")
    if args.smoke:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
