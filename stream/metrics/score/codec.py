"""The stored value of one customer: its evaluated state packed, then its pending record.

The packed state is one JSON array per customer. Buckets are stored per activity as a dense
run of one-character counts (0-9a-zA-Z; counts never exceed the cap) from a start offset
relative to the last evaluated boundary, so a daily-active customer costs ~1 byte per bucket
and activity. Caps above 61 fall back to a list of numbers for that activity. A decayed activity
keeps no buckets before the evaluated boundary, only its amount (an integer, ~13 digits; none
when 0), appended last so that values written before decay existed still decode.

A pending record (:mod:`stream.metrics.score.pending`) follows the packed state after a NUL
byte, as MessagePack (:func:`split_value`). Its own module because the format outlives the code:
values written by older versions must still decode, so every change to it is made here, with
the math (:mod:`stream.metrics.score.evaluation`) unaware of it. The one exception is the runs'
loops (:func:`~stream.metrics.score.summary_core.bucket_runs` and ``bucket_counts``): they live
in the scores' compiled core, beside the other per-customer loops of a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from stream.engine import compiled
from stream.metrics.score import summary_core as summary_source
from stream.metrics.score.evaluation import OPEN, Customer, SupportHit
from stream.metrics.score.pending import absorb_pending
from stream.metrics.score.rules import ScoreRules

__all__ = ["load", "pack", "split_value", "summary_core", "unpack"]

# The scores' hot loops (a batch's touches, and the buckets packed and unpacked here): the
# compiled build of summary_core.py when there is a current one.
if TYPE_CHECKING:
    summary_core = summary_source
else:
    summary_core = compiled.load(summary_source)


class _Packed(msgspec.Struct, array_like=True):
    u: str
    e: int
    s: int
    h: int
    f: int
    ch: str
    l: int  # noqa: E741
    b: list[tuple[int, int, str | list[int]]]  # (activity, first bucket - e, counts)
    hi: list[tuple[int, int]]
    r: list[tuple[int, str, int, int]]
    fb: tuple[int, int]
    t: dict[str, int]
    rp: int
    sup: bool
    d: list[tuple[int, int]] = []  # (decayed activity, amount); absent in older values
    #: tickets (see evaluation.TICKET_CREATED) and pending ticket events; absent in older
    #: values, whose ``t`` held open tickets only (ticket -> created ts, -1 once replied to)
    tk: dict[str, list[int]] = {}
    sp: list[tuple[int, int, str, bool]] = []


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Packed)


def pack(c: Customer) -> str:
    p = _Packed(
        c.user, c.evaluated, c.score, c.health, c.first_ts, c.channel, c.last_ts,
        summary_core.bucket_runs(c.buckets, c.evaluated),
        c.history, c.recent, (c.feedback, c.feedback_ts), {}, c.last_reply_ms,
        c.had_support, sorted(c.decayed.items()), c.tickets, list(c.support_pending),
    )  # fmt: skip
    return _encoder.encode(p).decode()


def unpack(value: bytes | str, n_activities: int) -> Customer:
    """The evaluated state of a stored value (a pending record after it is not looked at; a
    value that is only a pending record gives the customer, never evaluated)."""
    raw = value  # msgspec parses str and bytes alike
    if "\0" in raw if isinstance(raw, str) else b"\0" in raw:
        state, pending = split_value(raw)
        if state is None:
            return Customer(pending[0] if pending else "")
        raw = state
    p = _decoder.decode(raw)
    buckets = summary_core.bucket_counts(p.b, p.e, n_activities)
    tickets = {k: list(v) for k, v in p.tk.items()}
    for ticket, created in p.t.items():  # a value written before tickets kept their lifecycle
        replies = -1 if created < 0 else 0
        tickets.setdefault(ticket, [created, replies, 0, OPEN, max(created, -1)])
    return Customer(
        p.u, p.e, p.s, p.h, p.f, p.ch, p.l, buckets, list(p.hi), list(p.r), p.fb[0], p.fb[1],
        tickets, p.rp, p.sup, {i: d for i, d in p.d if i < n_activities},
        [SupportHit(*h) for h in p.sp],
    )  # fmt: skip


def split_value(value: bytes | str) -> tuple[bytes | None, list[Any] | None]:
    """A stored value: (packed state or None, pending record or None)."""
    raw = value.encode() if isinstance(value, str) else value
    state, sep, rest = raw.partition(b"\0")
    return (state or None), (msgspec.msgpack.decode(rest) if sep else None)


def load(value: bytes | str, rules: ScoreRules) -> Customer:
    """A customer as stored, pending activity included (the read side's view)."""
    state, pending = split_value(value)
    n = len(rules.activities)
    c = unpack(state, n) if state is not None else Customer(pending[0] if pending else "")
    if pending is not None:
        absorb_pending(c, pending, rules)
    return c
