"""A keyed pseudo-random permutation of range(n), evaluated at any positions without storing it.

permute(i, n, key) is position i of a random-looking ordering of range(n), a bijection for every key. Why not
rng.permutation(n): a text stream over 10B tokens has 200M windows, and a stored ordering per run would cost
1.6 GB; this one costs a key. Construction: a 4-round Feistel network on the smallest even number of bits that
covers n (a bijection of [0, 2^bits) whatever the round function), restricted to [0, n) by cycle walking
(encrypt again until the value falls in range; since 2^bits < 4n that takes under 4 rounds on average, and it
stays a bijection because each value walks along its own cycle). Round function: the splitmix64 finaliser.
"""
from __future__ import annotations

import numpy as np

ROUNDS = 4
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    z = x ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1   # uint64 arrays wrap modulo 2^64, as the finaliser needs
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def permute(i, n: int, key: int) -> np.ndarray:
    """Positions i (ints in [0, n)) mapped through the permutation of range(n) chosen by `key` (any int)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    bits = max(2, (n - 1).bit_length())
    bits += bits & 1
    half, mask = np.uint64(bits // 2), np.uint64((1 << (bits // 2)) - 1)
    keys = np.random.SeedSequence(int(key) % 2**128).generate_state(ROUNDS, np.uint64)

    def encrypt(x):
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (_mix(right, k) & mask)
        return (left << half) | right

    x = np.asarray(i, dtype=np.int64)
    if x.size and (x.min() < 0 or x.max() >= n):
        raise ValueError(f"positions must lie in [0, {n})")
    y = encrypt(x.astype(np.uint64))
    outside = np.flatnonzero(y >= np.uint64(n))
    while outside.size:
        y[outside] = encrypt(y[outside])
        outside = outside[y[outside] >= np.uint64(n)]
    return y.astype(np.int64)
