"""The one seed hash (nayer_scale.seeding): golden values and the kernel package's copy.

The golden values below are the outputs of the seed functions as they were before
``nayer_scale.seeding`` existed (``memory.sampler.splitmix64`` / ``batch_seed``,
``memory.retention.reservoir_draw``, ``nayer_kernels.noisy_seed``), computed from that code and
pinned here: a change of any of them would change every run's student batches, reservoir
decisions or noisy-layer initialisations (and break bit-identical resume of old checkpoints).
"""

from __future__ import annotations

import hashlib

import pytest

from nayer_kernels import dispatch as kernel_dispatch
from nayer_kernels import noisy_seed
from nayer_scale.memory import batch_seed
from nayer_scale.memory.retention import reservoir_draw
from nayer_scale.seeding import derive_seed, splitmix64

SPLITMIX64 = [
    (0, 16294208416658607535),
    (1, 10451216379200822465),
    (2, 10905525725756348110),
    (42, 13679457532755275413),
    (2**32, 14135772400868000056),
    (2**63, 5196802822362493915),
    (2**64 - 1, 16490336266968443936),
    (0x9E3779B97F4A7C15, 7960286522194355700),
]
BATCH_SEED = [
    ((0, 0, 0, 0), 1195769770526638388),
    ((0, 0, 1, 0), 7851880781397474849),
    ((3, 0, 1, 5), 2997200057511782211),
    ((3, 1, 1, 5), 6009658808172246425),
    ((7, 3, 2, 11), 1387091415266631011),
    ((123456789, 7, 99, 1000), 3164792722475923794),
    ((2**63, 15, 400, 50000), 7589073936246157886),
]
# (seed, rank, t): the full 64-bit hash before the modulo, and reservoir_draw's value
RESERVOIR = [
    ((0, 0, 0), 2558736989570252433, 0),
    ((0, 0, 5), 8176773786598856692, 4),
    ((3, 1, 17), 12271828824676335192, 6),
    ((11, 2, 1000), 12145074560255095020, 562),
    ((2**40, 7, 2**20), 4976824644802597668, 593390),
]
NOISY_SEED = [
    ((0, 0, 0, 0), 1195769770526638388),
    ((0, 1, 2, 3), 735100177291612810),
    ((1, 3, 5, 0), 5365842546504167058),
    ((42, 7, 300, 15), 6769658194035046141),
    ((2**63, 2**32, 1, 2), 1896459220170020494),
]
# sha256 of the comma-joined values over a grid (see _digest)
GRID_DIGESTS = {
    "batch_seed": "89dec7516ce34be569f957c2d1ae747ad5355673e9ebc2ac13df478d5a7dba7a",
    "reservoir_draw": "46a67aa3178ca28f52faa6c9076b7e6e135d8f6d7c98ec955b6b5d8b80663537",
    "noisy_seed": "23f89d9a5f1b252ca617467e2b7fde9992748aa975fb5ab33603de7f9813947e",
}


def _digest(values) -> str:
    return hashlib.sha256(",".join(map(str, values)).encode()).hexdigest()


@pytest.mark.parametrize("z, expected", SPLITMIX64)
def test_splitmix64_golden(z, expected):
    assert splitmix64(z) == expected
    assert kernel_dispatch._splitmix64(z) == expected  # the kernel package's copy


@pytest.mark.parametrize("args, expected", BATCH_SEED)
def test_batch_seed_golden(args, expected):
    assert batch_seed(*args) == expected
    assert derive_seed(*args) >> 1 == expected


@pytest.mark.parametrize("args, raw, expected", RESERVOIR)
def test_reservoir_draw_golden(args, raw, expected):
    assert derive_seed(*args) == raw
    assert reservoir_draw(*args) == expected == raw % (args[2] + 1)


@pytest.mark.parametrize("args, expected", NOISY_SEED)
def test_noisy_seed_golden(args, expected):
    assert noisy_seed(*args) == expected
    assert derive_seed(*args) >> 1 == expected  # the kernel package's chain is the library's


def test_grids_golden():
    assert (
        _digest(batch_seed(s, r, e, k) for s in range(3) for r in range(4) for e in range(5) for k in range(20))
        == GRID_DIGESTS["batch_seed"]
    )
    assert (
        _digest(reservoir_draw(s, r, t) for s in range(3) for r in range(4) for t in range(200))
        == GRID_DIGESTS["reservoir_draw"]
    )
    assert (
        _digest(noisy_seed(s, e, b, r) for s in range(3) for e in range(5) for b in range(20) for r in range(4))
        == GRID_DIGESTS["noisy_seed"]
    )


def test_kernel_copy_equals_library_copy():
    values = [0, 1, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1] + [splitmix64(i) for i in range(2000)]
    assert all(kernel_dispatch._splitmix64(z) == splitmix64(z) for z in values)
    assert all(
        noisy_seed(a, b, c, d) == derive_seed(a, b, c, d) >> 1
        for a in (0, 5, 2**63)
        for b in range(4)
        for c in range(6)
        for d in range(3)
    )


def test_derive_seed_order_and_chain():
    assert derive_seed(7) == splitmix64(7)
    assert derive_seed(7, 1, 2) == splitmix64(splitmix64(splitmix64(7) ^ 1) ^ 2)
    assert derive_seed(7, 1, 2) != derive_seed(7, 2, 1)  # the order of the keys is part of the value
    assert 0 <= derive_seed(2**64 - 1, 2**64 - 1) < 2**64
