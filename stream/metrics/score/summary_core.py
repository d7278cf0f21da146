"""A customer's batch activity as a pending record: the scores' per-touch work. Pure.

Most touches of a customer only add activity between two evaluations; the batch merges them into
a pending record after the customer's value in Redis without reading it
(:class:`stream.metrics.score.state.ScoreState`, apply op A). This is the loop over those
touches, the scores' largest share of a batch. Like :mod:`stream.metrics.session_core`, it is
the only source of its code and is also built compiled (``summary_core_compiled.pxd``, see
:mod:`stream.engine.compiled`).

A pending record is ``[user, last ts, first ts, channel of the first touch, (bucket, activity,
count) ...]``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from stream.contract.decode import Event
from stream.metrics.labels import NOT_SET, OTHER

__all__ = ["channel_label", "summary"]


def channel_label(channel: str | None, channels: Collection[str]) -> str:
    """The bounded channel label of a touch."""
    if channel is None:
        return NOT_SET
    return channel if channel in channels else OTHER


def summary(
    events: Sequence[Event],
    index: Mapping[str, Sequence[int]],
    bucket_ms: int,
    n_activities: int,
    channels: Collection[str],
) -> tuple[list[Any], int]:
    """One customer's batch touches as a pending record, and its earliest bucket."""
    e = events[0]
    if len(events) == 1:  # the usual touch in a batch: what the loop below gives for one
        ts = e.ts_ms
        bucket = ts // bucket_ms
        rec: list[Any] = [e.user_id, ts, ts, channel_label(e.props.channel, channels)]
        for i in index[e.type]:
            rec += (bucket, i, 1)
        return rec, bucket
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
            label = channel_label(e.props.channel, channels)
            if channel is None or label < channel:
                channel = label
    rec = [events[0].user_id, last, first, channel]
    lowest = -1
    for key, count in counts.items():
        bucket = key // n_activities
        rec += (bucket, key - bucket * n_activities, count)
        if lowest < 0 or key < lowest:
            lowest = key
    return rec, lowest // n_activities
