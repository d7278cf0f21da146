"""Fixed log-linear duration buckets for the duration histograms (HDR-histogram style).

The session-duration and ticket-time hashes count durations per bucket, not per whole second, so
that a day window holds a few hundred fields per dimension value instead of one per distinct
second. The scheme is fixed (no configuration: every stored field means the same forever) and
pure integer math:

* whole seconds ``0 … 63`` are buckets of their own (index = the second), exact;
* from 64 s on, every power of two ``[2^k, 2^(k+1))`` is cut into 32 equal sub-buckets of
  ``2^(k-5)`` seconds: ``64–65, 66–67, …, 126–127, 128–131, …, 3584–3647, …``.

The index of ``s ≥ 64`` is ``shift·32 + (s >> shift)`` with ``shift = bit_length(s) − 6``; for
``s < 64`` the same formula with ``shift = 0`` gives ``s``. Indexes grow with the seconds and
every index from 0 up is a bucket; 10^7 s is bucket 614.

A bucket reports its **representative**: the midpoint of the span of durations it holds,
``[lower, upper + 1)`` seconds, i.e. ``lower + width / 2`` (an integer, the width being even);
a one-second bucket reports its whole second, as before the buckets. Error bound: for every
whole second ``s`` in a bucket, ``|representative − s| ≤ s / 64`` (1.5625 %; reached at the
first second of each power of two, e.g. 64 → 65), and above 64 s the representative is also
within 1/64 of the unrounded duration. Zero error below 64 s. A median of representatives (the
mean of the two middle ones for an even count) is therefore within 1/64 of the exact median of
the whole seconds: each order statistic moves by at most 1/64 of itself.

Field names end in ``b<index>`` (``all|b248`` for 3600 s). Fields written before the buckets end
in the whole second itself (``all|3600``): digits only, so the two can never be confused, and
:func:`bucket_counts` reads an old field into the bucket of its second — windows written before
an upgrade (and take-backs of ticket times across it) still answer, in buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "EXACT_BELOW",
    "MARK",
    "MAX_RELATIVE_ERROR",
    "SUB_BUCKETS",
    "Bucket",
    "bucket_counts",
    "bucket_field",
    "bucket_of",
    "bucket_span",
    "field_bucket",
    "representative",
]

#: log2 of the sub-buckets per power of two.
SUB_BITS = 5
#: Sub-buckets per power of two (from EXACT_BELOW on).
SUB_BUCKETS = 1 << SUB_BITS
#: Whole seconds below this are exact, one bucket each.
EXACT_BELOW = 2 * SUB_BUCKETS
#: ``|representative − s| ≤ s × MAX_RELATIVE_ERROR`` for every second ``s`` in the bucket.
MAX_RELATIVE_ERROR = 1 / (2 * SUB_BUCKETS)
#: Marks a bucket field: ``<prefix>b<index>`` (old whole-second fields are digits only).
MARK = "b"


class Bucket(NamedTuple):
    """One bucket: whole seconds ``lower … upper`` (inclusive), reported as ``representative``."""

    lower: int
    upper: int
    representative: int


def bucket_of(seconds: int) -> int:
    """The index of the bucket holding a whole number of seconds (≥ 0)."""
    if seconds < 0:
        raise ValueError(f"a duration is never negative: {seconds}")
    shift = seconds.bit_length() - SUB_BITS - 1
    if shift <= 0:
        return seconds
    return (shift << SUB_BITS) + (seconds >> shift)


def bucket_span(index: int) -> Bucket:
    """Lower and upper whole seconds of a bucket, and the value it reports."""
    if index < 0:
        raise ValueError(f"no bucket {index}")
    if index < EXACT_BELOW:
        return Bucket(index, index, index)
    shift = (index >> SUB_BITS) - 1
    lower = (index - (shift << SUB_BITS)) << shift
    return Bucket(lower, lower + (1 << shift) - 1, lower + (1 << (shift - 1)))


def representative(index: int) -> int:
    return bucket_span(index).representative


def bucket_field(seconds: int) -> str:
    """The field suffix a duration of ``seconds`` whole seconds is counted under."""
    return MARK + str(bucket_of(seconds))


def field_bucket(suffix: str) -> int:
    """The bucket of a field suffix: ``b<index>``, or an old whole-second field ``<s>``."""
    if suffix.startswith(MARK):
        return int(suffix[len(MARK) :])
    return bucket_of(int(suffix))


def bucket_counts(fields: Mapping[str, int], prefix: str) -> dict[int, int]:
    """Bucket index -> count of the duration fields ``<prefix><suffix>`` of a hash (old and new
    fields of one bucket add up; buckets that net to zero are left out)."""
    counts: dict[int, int] = {}
    for name, n in fields.items():
        if name.startswith(prefix):
            index = field_bucket(name[len(prefix) :])
            counts[index] = counts.get(index, 0) + n
    return {index: n for index, n in counts.items() if n}
