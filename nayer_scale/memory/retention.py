"""Which shards a bounded memory keeps (``memory.max_images``): FIFO or reservoir retirement.

NAYER's memory is a buffer; the paper's Table 5 shows the student keeps nearly all its accuracy
with a bounded one (CIFAR-10: 90.41% with 5k images, 91.64% with 100k, 91.94% with all). Each
process bounds its own shards to ``max_images // world_size`` images (no coordination, the same
decision on every restart), whole shards at a time:

- ``fifo``: the oldest shards retire until the new one fits (the paper's buffer).
- ``reservoir``: Vitter's Algorithm R over shards (J. S. Vitter, "Random sampling with a
  reservoir", ACM TOMS 1985): with room for k shards, shard t (0-based) is kept if t < k, else
  with probability k / (t + 1), replacing a uniformly chosen kept one; the kept set is then a
  uniform sample of the whole history. The random draw of shard t is a function of (seed, rank, t)
  alone, so it needs no state and a resumed run decides exactly as the uninterrupted one.

A decision only changes the manifest (``MemoryBank.write``); retired files are deleted later, once
no kept checkpoint lists them (``MemoryBank.release``).
"""

from __future__ import annotations

from ..seeding import derive_seed

__all__ = ["RETIREMENTS", "admit", "reservoir_draw"]

RETIREMENTS = ("fifo", "reservoir")


def reservoir_draw(seed: int, rank: int, t: int) -> int:
    """Algorithm R's draw for shard ``t`` of process ``rank``: an integer uniform in [0, t]
    ``derive_seed(seed, rank, t) % (t + 1)`` (splitmix64, ``nayer_scale.seeding``; the modulo bias
    is below 2**-40 for t < 2**24)."""
    return derive_seed(seed, rank, t) % (t + 1)


def admit(
    kept: list[dict], t: int, n: int, cap: int, policy: str, seed: int = 0, rank: int = 0
) -> tuple[bool, list[dict], int | None]:
    """Decide what happens when shard ``t`` (``n`` images) of this process arrives.

    Args:
        kept: this process's live manifest entries, oldest first (each with ``num_samples`` and,
            for reservoir, ``slot``). t: the shard's 0-based index among all shards this process
            has made. n: its images. cap: images this process may keep (0 = unbounded).
        policy: "fifo" or "reservoir".

    Returns:
        (admitted, entries to retire, reservoir slot of the new shard or None).

    Raises:
        ValueError: an unknown policy, or ``cap`` smaller than one shard of ``n`` images.
    """
    if policy not in RETIREMENTS:
        raise ValueError(f"unknown memory.retirement {policy!r}: use fifo or reservoir")
    if cap <= 0:
        return True, [], None
    if n > cap:
        raise ValueError(
            f"a shard of {n} images does not fit a memory of {cap} images per process: raise "
            "memory.max_images to at least synthesis.batch_size x processes"
        )
    if policy == "fifo":
        total, retire = sum(e["num_samples"] for e in kept), []
        for entry in kept:
            if total + n <= cap:
                break
            retire.append(entry)
            total -= entry["num_samples"]
        return True, retire, None
    slots = cap // n  # reservoir of whole shards of n images (a synthesis batch is a fixed size)
    if t < slots and len(kept) < slots:
        used = {e.get("slot") for e in kept}
        return True, [], min(s for s in range(slots) if s not in used)
    j = reservoir_draw(seed, rank, t)
    if j >= slots:
        return False, [], None
    return True, [e for e in kept if e.get("slot") == j], j
