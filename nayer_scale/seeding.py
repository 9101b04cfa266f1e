"""The one seed hash of the library: splitmix64 chained over a run seed and a tuple of keys.

Every seed that must be the same on every machine, in every thread and after a resume (student
batch draws, reservoir retirement draws, noisy-layer re-initialisations) is a pure function of
integers, computed here::

    splitmix64(z) = the SplitMix64 finaliser of z mod 2**64 (Steele, Lea, Flood, "Fast splittable
                    pseudorandom number generators", OOPSLA 2014)
    derive_seed(seed, k1, ..., kn) = h_n, where h_0 = splitmix64(seed)
                                         and   h_i = splitmix64(h_{i-1} XOR k_i)

The order of the arguments is part of the value: the seed first, then the keys in the order given
(``derive_seed(s, a, b) != derive_seed(s, b, a)`` in general). Each step is a bijection of 64-bit
integers, so changing any one key always changes the result.

Callers (all bit-identical to what they were before this module existed):

- ``nayer_scale.memory.sampler.batch_seed(seed, rank, epoch, step) = derive_seed(seed, rank,
  epoch, step) >> 1``;
- ``nayer_scale.memory.retention.reservoir_draw(seed, rank, t) = derive_seed(seed, rank, t) % (t + 1)``;
- ``nayer_kernels.noisy_seed(run_seed, epoch, batch_index, rank) = derive_seed(run_seed, epoch,
  batch_index, rank) >> 1``. The kernel package does not import ``nayer_scale``, so it keeps its
  own copy of splitmix64; ``tests/unit/test_seeding.py`` holds the two equal.
"""

from __future__ import annotations

__all__ = ["MASK64", "derive_seed", "splitmix64"]

MASK64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """The SplitMix64 finaliser of ``z`` (Steele, Lea, Flood 2014): a 64-bit integer hash.

    Args:
        z: any Python int (taken mod 2**64).

    Returns:
        int in [0, 2**64).
    """
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def derive_seed(seed: int, *keys: int) -> int:
    """``h_n`` of the chain ``h_0 = splitmix64(seed)``, ``h_i = splitmix64(h_{i-1} ^ keys[i-1])``.

    Pure Python, no device work, no state: the same value on every machine and in every thread.

    Args:
        seed: the run seed (any int, taken mod 2**64).
        *keys: the integers the seed is derived for (e.g. rank, epoch, step), in this order.

    Returns:
        int in [0, 2**64); callers that need a non-negative int64 (``torch.Generator.manual_seed``)
        take ``>> 1``.
    """
    h = splitmix64(seed)
    for key in keys:
        h = splitmix64(h ^ key)
    return h
