"""Fixed-point half-life decay: the unit a decayed amount is counted in and one step of it.

The definition (metric-definitions.md) fixes the arithmetic to the bit, so that the stream and a
batch recomputation agree whatever the platform: 32-bit fixed point, a per-bucket factor found by
integer search rather than ``2 ** x`` in floats, rounding down, a cap and a forget threshold. Its
own module because both sides use it -- :mod:`stream.metrics.score.rules` derives each
activity's factor and cap from it, :mod:`stream.metrics.score.evaluation` steps the amounts with
it -- and the tests check it against the written definition directly.
"""

from __future__ import annotations

__all__ = ["DECAY_CAP", "DECAY_FORGET", "FIXED_BITS", "ONE", "decay_factor", "decay_step"]

#: Decayed amounts are fixed point with this many fraction bits.
FIXED_BITS = 32
ONE = 1 << FIXED_BITS
#: A decayed amount never exceeds this many times the target (so a burst is remembered for at
#: most log2(64) = 6 half-lives of silence before the factor desaturates) ...
DECAY_CAP = 64
#: ... and is forgotten once below 1/256 of the target: the factor loses < 0.4 % of its weight
#: at that step, and a silent customer's amounts are all 0 within 6 + 8 = 14 half-lives.
DECAY_FORGET = 256


def decay_factor(half_life_buckets: int) -> int:
    """``floor(2^32 * 2^(-1/h))``, exactly: the largest ``r`` with ``r^h <= 2^(32h - 1)``.

    Integer search, not ``2 ** x`` in floats, so the factor -- hence every score -- does not
    depend on the platform's libm."""
    h = half_life_buckets
    bound = 1 << (FIXED_BITS * h - 1)
    lo, hi = ONE >> 1, ONE  # 2^(-1/h) is in [1/2, 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid**h <= bound:
            lo = mid
        else:
            hi = mid
    return lo


def decay_step(amount: int, added: int, factor: int, target: int) -> int:
    """The decayed amount at a boundary from the one at the previous boundary and the count of
    the bucket between them (the definition: the stream and the reference both follow it)."""
    d = (amount * factor) >> FIXED_BITS
    if d * DECAY_FORGET < target * ONE:
        d = 0
    if added:
        d = min(d + added * ONE, DECAY_CAP * target * ONE)
    return d
