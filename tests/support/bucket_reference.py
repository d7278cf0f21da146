"""The documented duration buckets (docs/metrics.md, "Duration medians: fixed buckets"), built
apart from stream/metrics/buckets.py.

The stream maps seconds to buckets with bit arithmetic; this walks the written rule instead —
every whole second below 64 s is a bucket, then each power of two from 64 on is cut into 32
equal parts — into a table of lower bounds, and finds a second's bucket by bisection. A bucket
reports the midpoint of the seconds it spans (its whole second when it is one second wide).

Medians here are exact medians of those representatives (``statistics.median``), checked
against the exact median of the whole seconds with the documented bound (1/64 of it), so a
stream-equals-reference comparison stays exact (no tolerance) and the bound is tested on every
median the reference computes.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Iterable

#: Seconds below this are one bucket each.
EXACT = 64
#: Equal parts of each power of two from EXACT on.
PARTS = 32
#: The documented bound: |reported − exact| ≤ exact / 64.
BOUND_DIVISOR = 64


def _lowers(top_power: int = 48) -> list[int]:
    lowers = list(range(EXACT))
    power = EXACT
    while power < 2**top_power:
        width = power // PARTS
        lowers += [power + part * width for part in range(PARTS)]
        power *= 2
    lowers.append(power)  # the end of the last bucket
    return lowers


LOWERS = _lowers()


def bucket(seconds: int) -> int:
    """Index of the bucket holding ``seconds`` (the field is ``b<index>``)."""
    assert 0 <= seconds < LOWERS[-1]
    return bisect_right(LOWERS, seconds) - 1


def field_suffix(seconds: int) -> str:
    return f"b{bucket(seconds)}"


def reported(seconds: int) -> float:
    """What a duration of ``seconds`` whole seconds is reported as: its bucket's midpoint."""
    i = bucket(seconds)
    lower, end = LOWERS[i], LOWERS[i + 1]  # the bucket is [lower, end) seconds
    return float(lower) if end - lower == 1 else (lower + end) / 2


def bucketed_median(seconds: Iterable[int]) -> float:
    """The median the stream reports for these whole-second durations (non-empty)."""
    values = list(seconds)
    got = float(statistics.median(reported(s) for s in values))
    exact = statistics.median(values)
    assert abs(got - exact) <= exact / BOUND_DIVISOR, (got, exact)
    return got
