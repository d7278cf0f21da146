"""Reusable computations on top of the stored windows, for the families' metric specs.

Each returns a :data:`~stream.metrics.spec.Compute`: one value per requested window from summed
counters, merged distinct-count sets and duration hashes (:mod:`stream.metrics.reader`).
Distinct users are HyperLogLog estimates (0.81 % standard error); duration medians are medians
of bucket representatives (:mod:`stream.metrics.buckets`: within 1/64 of the exact median).
"""

from __future__ import annotations

from collections.abc import Callable

from stream.engine.fold import ACTIVE_SET
from stream.engine.keys import FIELD_SEP, escape, unescape
from stream.metrics.buckets import bucket_counts, representative
from stream.metrics.levels import levels
from stream.metrics.reader import QueryError, Reader
from stream.metrics.spec import MetricSpec, Query, Sums, Value

__all__ = [
    "active_users",
    "counter_spec",
    "counters",
    "field_sum",
    "hash_median",
    "level_windows",
    "median_of_counts",
    "one_dim_slice",
    "split_field",
    "sums_spec",
]


def split_field(name: str) -> list[str]:
    return [unescape(p) for p in name.split(FIELD_SEP)]


def _sum_matching(fields: dict[str, int], prefix: str, dims: tuple[str, ...], q: Query) -> int:
    """Sum counter fields ``prefix|<dim1>|<dim2>…`` whose dimensions match the filters."""
    wanted = [q.filters.get(d) for d in dims]
    total = 0
    head = prefix + FIELD_SEP
    for name, value in fields.items():
        if not name.startswith(head):
            continue
        parts = split_field(name)[1:]
        if all(w is None or w == p for w, p in zip(wanted, parts, strict=False)):
            total += value
    return total


async def counters(q: Query, r: Reader, families: tuple[str, ...] | None) -> list[dict[str, int]]:
    """Every counter of each queried window, summed over the families' shards."""
    shards = await r.shards(families)
    return await r.counters(shards, q.granularity, q.starts)


def field_sum(fields: dict[str, int], prefix: str, dims: tuple[str, ...], q: Query) -> float:
    """A counter without dimensions, or the filtered sum of one with dimensions."""
    if not dims:
        return float(fields.get(prefix, 0))
    return float(_sum_matching(fields, prefix, dims, q))


def sums_spec(
    name: str,
    description: str,
    unit: str,
    sums: Sums,
    families: tuple[str, ...],
    dimensions: tuple[str, ...] = (),
    **kwargs: object,
) -> MetricSpec:
    """A metric that is ``sums.combine`` of (filtered) counter sums of one window."""

    async def compute(q: Query, r: Reader) -> list[Value]:
        return [
            sums.combine(*(field_sum(w, f, dimensions, q) for f in sums.fields))
            for w in await counters(q, r, families)
        ]

    return MetricSpec(
        name,
        description,
        unit,
        compute,
        dimensions=dimensions,
        families=families,
        sums=sums,
        **kwargs,  # type: ignore[arg-type]
    )


def _identity(value: float) -> Value:
    return value


def counter_spec(
    name: str,
    description: str,
    field: str,
    families: tuple[str, ...],
    dimensions: tuple[str, ...] = (),
    **kwargs: object,
) -> MetricSpec:
    """A plain count: the (filtered) sum of one counter."""
    return sums_spec(
        name, description, "count", Sums((field,), _identity), families, dimensions, **kwargs
    )


async def active_users(q: Query, r: Reader, days: int | None) -> list[Value]:
    """Distinct active users of each window, or of the ``days`` days ending with it."""
    shards = await r.shards()
    groups = [[s] if days is None else q.windows.previous_days(s, days) for s in q.starts]
    return [float(v) for v in await r.distinct(shards, q.granularity, groups, [ACTIVE_SET])]


def one_dim_slice(q: Query, dimensions: tuple[str, ...]) -> tuple[str, str]:
    """(counter suffix, histogram-hash prefix) of the one dimension filter, if any.

    Facts with several dimensions (sessions, tickets) are stored once per dimension, not per
    combination, so a query may filter by one of them at a time.
    """
    dims = [d for d in dimensions if d in q.filters]
    if len(dims) > 1:
        raise QueryError(f"filter by one of {', '.join(dimensions)}, not several")
    if not dims:
        return "", "all" + FIELD_SEP
    value = escape(q.filters[dims[0]])
    return FIELD_SEP + dims[0] + FIELD_SEP + value, dims[0] + FIELD_SEP + value + FIELD_SEP


def median_of_counts(counts: dict[int, int]) -> Value:
    """Median of a multiset given as value -> count (mean of the two middle values if even)."""
    total = sum(counts.values())
    if total == 0:
        return None
    lower_rank, upper_rank = (total - 1) // 2, total // 2
    seen = 0
    lower: int | None = None
    for value in sorted(counts):
        seen += counts[value]
        if lower is None and seen > lower_rank:
            lower = value
        if seen > upper_rank:
            assert lower is not None
            return (lower + value) / 2
    raise AssertionError("unreachable")


async def hash_median(
    q: Query, r: Reader, families: tuple[str, ...], hash_name: str, prefix: str
) -> list[Value]:
    """Median of the durations counted under ``prefix`` in each window's hash, each duration
    taken as its bucket's representative (exact below 64 s, within 1/64 of it above; the mean of
    the two middle representatives for an even count). Old whole-second fields count in their
    bucket (:func:`~stream.metrics.buckets.bucket_counts`)."""
    shards = await r.shards(families)
    out: list[Value] = []
    for hist in await r.hashes(shards, q.granularity, q.starts, hash_name):
        counts = bucket_counts(hist, prefix)
        # Representatives grow with the index: one value per bucket, in the same order.
        out.append(median_of_counts({representative(i): n for i, n in counts.items()}))
    return out


async def level_windows(
    q: Query,
    r: Reader,
    families: tuple[str, ...],
    totals_name: str,
    total_of: Callable[[dict[str, int]], float],
    change: Callable[[dict[str, int]], float],
) -> list[tuple[float, float]]:
    """(level at the start, change within) of each queried window (:mod:`.levels`)."""
    shards = await r.shards(families)
    total = total_of(await r.totals(shards, totals_name))
    return await levels(
        r,
        shards,
        q.windows,
        q.options.granularities,
        q.granularity,
        q.starts,
        total,
        change,
        q.options.future_skew_seconds + 60,
    )
