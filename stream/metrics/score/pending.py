"""Pending activity: what a customer did since its last evaluation, kept apart and merged.

Between two evaluations a batch only adds activity to a customer: counts in buckets no
boundary the watermark reached yet can see, the latest event time, and possibly an earlier
first event (ts, channel). That is a commutative merge, so the apply does it in Redis (op A of
apply.lua) on a small record of its own without the worker reading the customer's state; the
record is folded into the state when the customer is next evaluated (:func:`absorb_pending`).
Record (MessagePack array): [user, last_ts, first_ts, channel, (bucket, activity, count)...],
stored after a NUL byte behind the customer's packed state (JSON never contains one; the user
is blanked when a state precedes it): no hash entry of its own, which would cost ~130 bytes.
Counts are not capped there: absorbing caps each bucket (at the target, or at DECAY_CAP x the
target for a decayed activity), as per event would.

Its own module because the merge is a contract with the Lua apply, not score math: the
evaluation never sees a pending record (it is absorbed first), and the codec only carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream.metrics.score.evaluation import Customer
from stream.metrics.score.rules import ScoreRules

__all__ = ["absorb_pending", "merge_pending"]


def merge_pending(old: list[Any] | None, new: Sequence[Any]) -> list[Any]:
    """What op A does to a pending record (the reference the Lua code follows; tests use it)."""
    if old is None:
        return list(new)
    rec = list(old)
    if new[1] > rec[1]:
        rec[1] = new[1]
    if (new[2], new[3]) < (rec[2], rec[3]):
        rec[2], rec[3] = new[2], new[3]
    at = {(rec[p], rec[p + 1]): p for p in range(4, len(rec), 3)}
    for q in range(4, len(new), 3):
        p = at.get((new[q], new[q + 1]))
        if p is None:
            rec += new[q : q + 3]
        else:
            rec[p + 2] += new[q + 2]
    return rec


def absorb_pending(c: Customer, rec: Sequence[Any], rules: ScoreRules) -> None:
    """Fold a pending record into the state: the same as absorbing its events one by one."""
    first, channel = rec[2], rec[3]
    if c.first_ts < 0 or (first, channel) < (c.first_ts, c.channel):
        c.first_ts, c.channel = first, channel
    if rec[1] > c.last_ts:
        c.last_ts = rec[1]
    n = len(rules.activities)
    caps = rules.caps
    buckets = c.buckets
    for p in range(4, len(rec), 3):
        k, i = rec[p], rec[p + 1]
        if i >= n:  # an activity removed from the configuration since
            continue
        counts = buckets.get(k)
        if counts is None:
            counts = buckets[k] = [0] * n
        cap = caps[i]
        if counts[i] < cap:  # a count above a since lowered cap stays, as per event
            counts[i] = min(cap, counts[i] + rec[p + 2])
