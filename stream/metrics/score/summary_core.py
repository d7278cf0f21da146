"""The scores' per-customer loops of a batch: touches into a pending record, which customers to
read, bucket counts to and from their stored runs. Pure.

Most touches of a customer only add activity between two evaluations; the batch merges them into
a pending record after the customer's value in Redis without reading it
(:class:`stream.metrics.score.state.ScoreState`, apply op A). :func:`summary` is the loop over
those touches, the scores' largest share of a batch; :func:`to_read` picks the customers whose
state must be read instead. The customers that are read are unpacked and packed again
(:mod:`stream.metrics.score.codec`), whose loops over every bucket and activity are
:func:`bucket_runs` and :func:`bucket_counts`. Like :mod:`stream.metrics.session_core`, this
module is the only source of its code and is also built compiled
(``summary_core_compiled.pxd``, see :mod:`stream.engine.compiled`).

A pending record is ``[user, last ts, first ts, channel of the first touch, (bucket, activity,
count) ...]``.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence
from typing import Any

from stream.metrics.labels import NOT_SET, OTHER
from stream.metrics.score.touch import ScoreTouch

__all__ = [
    "DIGITS",
    "bucket_counts",
    "bucket_runs",
    "channel_label",
    "digit_value",
    "pending_entries",
    "summary",
    "to_read",
]

#: The characters of a stored run of bucket counts (:mod:`stream.metrics.score.codec`), one per
#: count from 0 to 61.
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def channel_label(channel: str | None, channels: Collection[str]) -> str:
    """The bounded channel label of a touch."""
    if channel is None:
        return NOT_SET
    return channel if channel in channels else OTHER


def summary(
    events: Sequence[ScoreTouch],
    index: Mapping[str, Sequence[int]],
    bucket_ms: int,
    n_activities: int,
    channels: Collection[str],
) -> tuple[list[Any], int]:
    """One customer's batch touches as a pending record, and its earliest bucket. (The usual
    single touch of a customer that is not read takes :func:`pending_entries`' own path.)"""
    e = events[0]
    counts: dict[int, int] = {}
    first = last = e.ts_ms
    for e in events:
        ts = e.ts_ms
        if ts > last:
            last = ts
        elif ts < first:
            first = ts
        base = ts // bucket_ms * n_activities
        for i in index[e.type]:
            key = base + i
            counts[key] = counts.get(key, 0) + 1
    # The first touch's channel; touches at the same first ms: the smallest label.
    channel: str | None = None
    for e in events:
        if e.ts_ms == first:
            label = channel_label(e.channel, channels)
            if channel is None or label < channel:
                channel = label
    rec: list[Any] = [events[0].user_id, last, first, channel]
    lowest = -1
    for key, count in counts.items():
        bucket = key // n_activities
        rec += (bucket, key - bucket * n_activities, count)
        if lowest < 0 or key < lowest:
            lowest = key
    return rec, lowest // n_activities


def pending_entries(
    items: Mapping[str, Sequence[ScoreTouch]],
    read: Container[str],
    index: Mapping[str, Sequence[int]],
    bucket_ms: int,
    n_activities: int,
    channels: Collection[str],
) -> tuple[list[Any], int]:
    """The touched customers that are not ``read`` as op A's entries, and how many there are.

    One call per batch: most touched customers are only merged, and a Python loop around
    :func:`summary` cost more per customer than the summary itself. An entry is ``field, due
    at, user, last ts, first ts, channel, number of runs, (bucket, activity, count) ...``, the
    due time the end of the customer's earliest touched bucket."""
    entries: list[Any] = []
    merged = 0
    for name, events in items.items():
        if name in read:
            continue
        merged += 1
        if len(events) == 1:  # the usual touch: what summary() gives for one, without its dict
            e = events[0]
            ts = e.ts_ms
            bucket = ts // bucket_ms
            runs = index[e.type]
            entries.append(name)
            entries.append((bucket + 1) * bucket_ms)
            entries.append(e.user_id)
            entries.append(ts)
            entries.append(ts)
            entries.append(channel_label(e.channel, channels))
            entries.append(len(runs))
            for i in runs:
                entries.append(bucket)
                entries.append(i)
                entries.append(1)
            continue
        rec, first_bucket = summary(events, index, bucket_ms, n_activities, channels)
        entries.append(name)
        entries.append((first_bucket + 1) * bucket_ms)
        entries += rec[:4]
        entries.append((len(rec) - 4) // 3)
        entries += rec[4:]
    return entries, merged


def to_read(
    items: Mapping[str, Sequence[ScoreTouch]], edge: int, additive: Collection[str]
) -> list[str]:
    """The touched customers whose state the batch must read: those with a touch that is not
    additive (a health event) or falls in a bucket that ended before ``edge`` (due)."""
    out = []
    for name, events in items.items():
        for e in events:
            if e.ts_ms < edge or e.type not in additive:
                out.append(name)
                break
    return out


def bucket_runs(
    buckets: Mapping[int, Sequence[int]], evaluated: int
) -> list[tuple[int, int, str | list[int]]]:
    """A customer's bucket counts as stored (:mod:`stream.metrics.score.codec`): per activity
    with a count, ``(activity, first bucket - evaluated, counts)``, the counts a dense run of
    one :data:`DIGITS` character each from the first to the last nonzero bucket, or a list of
    numbers when one does not fit a character."""
    out: list[tuple[int, int, str | list[int]]] = []
    if not buckets:
        return out
    lo = min(buckets)
    width = max(buckets) - lo + 1
    n = len(next(iter(buckets.values())))
    rows = [[0] * width for _ in range(n)]  # per activity, its count in every bucket
    for k, counts in buckets.items():
        for i in range(n):
            rows[i][k - lo] = counts[i]
    for i in range(n):
        row = rows[i]
        first = 0
        while first < width and not row[first]:
            first += 1
        if first == width:
            continue
        last = width - 1
        while not row[last]:
            last -= 1
        row = row[first : last + 1]
        if max(row) < len(DIGITS):
            out.append((i, lo + first - evaluated, "".join([DIGITS[v] for v in row])))
        else:
            out.append((i, lo + first - evaluated, row))
    return out


def digit_value(ch: str) -> int:
    """The count one character of a stored run stands for: its index in :data:`DIGITS`
    (computed, not looked up: this runs once per stored bucket and activity)."""
    code = ord(ch)
    if code <= 57:  # 0-9
        return code - 48
    if code >= 97:  # a-z: 10-35
        return code - 87
    return code - 29  # A-Z: 36-61


def bucket_counts(
    runs: Sequence[tuple[int, int, str | list[int]]], evaluated: int, n_activities: int
) -> dict[int, list[int]]:
    """The inverse of :func:`bucket_runs`: bucket -> count per activity. Runs of activities
    at or past ``n_activities`` (removed from the configuration since) are skipped."""
    buckets: dict[int, list[int]] = {}
    for i, start, run in runs:
        if i >= n_activities:
            continue
        k = evaluated + start
        if isinstance(run, str):  # a run of DIGITS
            text: str = run
            for ch in text:
                _put(buckets, k, i, digit_value(ch), n_activities)
                k += 1
        else:  # the counts themselves
            for v in run:
                _put(buckets, k, i, v, n_activities)
                k += 1
    return buckets


def _put(buckets: dict[int, list[int]], k: int, i: int, v: int, n_activities: int) -> None:
    """Set activity ``i``'s count in bucket ``k`` (nothing for a zero)."""
    if v:
        counts = buckets.get(k)
        if counts is None:
            counts = buckets[k] = [0] * n_activities
        counts[i] = v
