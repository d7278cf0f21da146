"""Engagement score, health score and churn-risk transitions of one customer. Pure.

Definitions (metric-definitions.md, "Engagement score and churn risk"):

* Time is cut into buckets of ``bucket_ms`` (a day by default; the demo uses a minute). The score
  is evaluated at bucket *boundaries*: the score at boundary ``b`` (instant ``b * bucket_ms``)
  counts the customer's activities with ``(b - n) * bucket_ms <= ts < b * bucket_ms``, where
  ``n = lookback / bucket`` -- the last ``n`` whole buckets before the instant.
* score = round_half_up(100 * sum(w_a * min(count_a / target_a, 1)) / sum(w_a)) over the
  *present* factors. A factor is missing when none of its event types can reach the score (their
  family is neither the home family nor relayed to it, see :data:`HOME_FAMILY`); it is dropped and
  the other weights renormalised. A factor the customer simply did not do counts 0 -- that is what
  makes silence lower the score.
* Bands: 0-40 ``at_risk`` (very disengaged), 41-75 ``engaged`` (somewhat), 76-100 ``highly``.
* Transitions, decided at each boundary the score is evaluated at, in boundary order:
  ``entered_at_risk`` -- the previous evaluation's band was not ``at_risk`` and this one is (a
  customer's first evaluation has no previous band and is never a transition); ``dropped`` -- the
  score is at least ``drop_points`` below the highest score in effect during the preceding
  ``drop_buckets`` buckets since the rule last fired (firing re-arms it from the new score).
* Health = weighted blend of the engagement score, the latest NPS (0-10 -> x10) or CSAT (1-5 ->
  (s-1) x 25) response, and support experience (100 - 20 per open ticket - a penalty growing with
  the latest first-reply time beyond its target); a factor the customer has no data for is
  dropped and the other weights renormalised. Same bands.

Why boundaries: a boundary ``b`` is only evaluated once the partition watermark has reached
``b * bucket_ms``; every event accepted later has ``ts >= watermark``, so buckets before ``b`` are
final and the result is the same whatever the arrival order and batch cuts. Between two
boundaries where nothing enters or leaves the lookback the score cannot change, so only those
*change boundaries* are evaluated; the customer's due time is the next one, which is how silence
re-scores a customer without any event from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any, NamedTuple

import msgspec

from stream.contract.types import FAMILY_OF, EventType, Family

#: The family whose partitions host customer state. Each family has its own topic and an
#: exactly-once apply is per input partition, so one customer's score can only be decided where
#: its events arrive together: other families' score inputs are relayed into the home topic
#: (stream/engine/relay.py); a family not relayed has "missing" factors (docs/architecture.md).
HOME_FAMILY = Family.CLICKSTREAM.value

_KNOWN = frozenset(t.value for t in EventType)
AT_RISK, ENGAGED, HIGHLY = "at_risk", "engaged", "highly"
BANDS = (AT_RISK, ENGAGED, HIGHLY)
ENTERED_AT_RISK, DROPPED = "entered_at_risk", "dropped"
REASONS = (ENTERED_AT_RISK, DROPPED)
#: Upper bounds of the score-distribution buckets (a score s counts in the first bound >= s).
SCORE_BOUNDS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
#: Health inputs kept per customer: open tickets remembered at most (by a short digest).
MAX_OPEN_TICKETS = 8
#: Transitions remembered per customer for the read side.
RECENT_TRANSITIONS = 3


def band_of(score: int) -> str:
    if score <= 40:
        return AT_RISK
    return ENGAGED if score <= 75 else HIGHLY


def bucket_label(score: int) -> str:
    """The score-distribution bucket (its upper bound) of a score."""
    return str(next(b for b in SCORE_BOUNDS if score <= b))


def round_half_up(x: Fraction) -> int:
    return int(x + Fraction(1, 2))


@dataclass(frozen=True)
class Activity:
    name: str
    events: frozenset[str]
    weight: int
    target: int


@dataclass(frozen=True)
class ScoreRules:
    activities: tuple[Activity, ...]
    bucket_ms: int = 86_400_000
    lookback_buckets: int = 30
    drop_points: int = 20
    drop_buckets: int = 7
    health_weights: tuple[int, int, int] = (60, 25, 15)  # engagement, feedback, support
    reply_target_ms: int = 8 * 3_600_000
    #: families whose events reach the score: the home family and the relayed ones
    home_families: frozenset[str] = frozenset({HOME_FAMILY})

    @cached_property
    def _integer_weights(self) -> tuple[tuple[int, ...], int]:
        """Per activity the multiplier of min(count, target) and the common denominator, so the
        score is exact integer arithmetic (per customer and boundary: Fraction was too slow)."""
        present = self.present()
        total = sum(a.weight for a, p in zip(self.activities, present, strict=True) if p)
        common = math.lcm(*(a.target for a in self.activities)) if self.activities else 1
        mult = tuple(
            100 * a.weight * (common // a.target) if p else 0
            for a, p in zip(self.activities, present, strict=True)
        )
        return mult, common * total

    @cached_property
    def index(self) -> dict[str, list[int]]:
        """Event type -> the activities it counts for."""
        out: dict[str, list[int]] = {}
        for i, a in enumerate(self.activities):
            for e in a.events:
                out.setdefault(e, []).append(i)
        return out

    @cached_property
    def _present(self) -> tuple[bool, ...]:
        return tuple(
            any(
                FAMILY_OF[EventType(e)].value in self.home_families for e in a.events if e in _KNOWN
            )
            for a in self.activities
        )

    def present(self) -> tuple[bool, ...]:
        """Per activity: can any of its events reach the score (else: a missing factor)?"""
        return self._present

    def score(self, counts: Sequence[int]) -> int:
        mult, denominator = self._integer_weights
        if not denominator:
            return 0
        num = sum(
            m * min(c, a.target) for m, c, a in zip(mult, counts, self.activities, strict=True)
        )
        return (2 * num + denominator) // (2 * denominator)  # round half up


def fractions(counts: Sequence[int], rules: ScoreRules) -> list[Fraction]:
    """Each activity's saturation min(count / target, 1) in the lookback."""
    pairs = zip(counts, rules.activities, strict=True)
    return [min(Fraction(c, a.target), Fraction(1)) for c, a in pairs]


def contributions(counts: Sequence[int], rules: ScoreRules) -> list[Fraction]:
    """Points each present activity adds (renormalised); missing ones add 0."""
    present = rules.present()
    total = sum(a.weight for a, p in zip(rules.activities, present, strict=True) if p)
    if not total:
        return [Fraction(0)] * len(rules.activities)
    return [
        Fraction(100 * a.weight, total) * f if p else Fraction(0)
        for a, p, f in zip(rules.activities, present, fractions(counts, rules), strict=True)
    ]


def engagement_score(counts: Sequence[int], rules: ScoreRules) -> int:
    return rules.score(counts)


def blend(parts: Sequence[tuple[int, int | None]]) -> int:
    """Weighted mean of 0-100 parts; a part without data (None) is dropped, weights renormalised."""
    known = [(w, v) for w, v in parts if v is not None]
    total = sum(w for w, _ in known)
    if not total:
        return 0
    return (2 * sum(w * v for w, v in known) + total) // (2 * total)  # round half up


def feedback_part(kind: str, value: int) -> int:
    """NPS 0-10 and CSAT 1-5 on one 0-100 scale."""
    return value * 10 if kind == _NPS else (value - 1) * 25


def support_part(open_tickets: int, last_reply_ms: int | None, rules: ScoreRules) -> int:
    """100, minus 20 per open ticket, minus up to 40 as the latest first reply takes up to 3x
    longer than its target."""
    penalty = Fraction(20 * min(open_tickets, 5))
    if last_reply_ms is not None and last_reply_ms > rules.reply_target_ms:
        over = Fraction(last_reply_ms - rules.reply_target_ms, 2 * rules.reply_target_ms)
        penalty += 40 * min(over, Fraction(1))
    return max(0, round_half_up(100 - penalty))


# ---- per-customer state -------------------------------------------------------------------


class Hit(NamedTuple):
    """One event as the score needs it: its time and what it is."""

    ts: int
    kind: str
    channel: str  # bounded acquisition-channel label
    ticket: str  # ticket id (support events) or ""
    value: int  # survey score or -1
    author: str  # ticket_replied author or ""


class Transition(NamedTuple):
    boundary: int  # bucket index: the event-time instant is boundary * bucket_ms
    reason: str
    old_score: int
    new_score: int
    fell: tuple[str, ...]  # activities whose lookback count fell since the previous evaluation


@dataclass
class Customer:
    """What is kept per customer (packed into one Redis hash field by :func:`pack`)."""

    user: str
    evaluated: int = -1  # last boundary evaluated through (-1: never)
    score: int = -1  # engagement score at that boundary (-1: never scored)
    health: int = -1
    first_ts: int = -1
    channel: str = ""  # of the first event: the customer's segment
    last_ts: int = -1
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> count per activity
    history: list[tuple[int, int]] = field(default_factory=list)  # (boundary, score) drop rule
    recent: list[tuple[int, str, int, int]] = field(default_factory=list)  # transitions
    feedback: int = -1  # latest NPS/CSAT on 0-100 (-1: none)
    feedback_ts: int = -1
    open_tickets: dict[str, int] = field(default_factory=dict)  # ticket digest -> created ts
    last_reply_ms: int = -1  # latest first-reply time (-1: none)
    had_support: bool = False

    @property
    def band(self) -> str | None:
        return band_of(self.score) if self.score >= 0 else None

    def counts_at(self, boundary: int, rules: ScoreRules) -> list[int]:
        """Lookback counts per activity at a boundary."""
        out = [0] * len(rules.activities)
        lo = boundary - rules.lookback_buckets
        for k, counts in self.buckets.items():
            if lo <= k < boundary:
                for i, c in enumerate(counts):
                    out[i] += c
        return out

    def health_at(self, score: int, rules: ScoreRules) -> int:
        we, wf, ws = rules.health_weights
        fb = None if self.feedback < 0 else self.feedback
        reply = None if self.last_reply_ms < 0 else self.last_reply_ms
        sup = support_part(len(self.open_tickets), reply, rules) if self.had_support else None
        return blend([(we, score), (wf, fb), (ws, sup)])


def activity_index(rules: ScoreRules) -> dict[str, list[int]]:
    """Event type -> the activities it counts for."""
    return rules.index


# Plain strings: Enum attribute access costs ~0.3 µs, paid per event here.
_NPS, _CSAT = EventType.NPS_RESPONSE.value, EventType.CSAT_RESPONSE.value
_OPENS = frozenset({EventType.TICKET_CREATED.value, EventType.TICKET_REOPENED.value})
_REPLIED = EventType.TICKET_REPLIED.value
_ENDS = frozenset({EventType.TICKET_SOLVED.value, EventType.TICKET_CLOSED.value})


def _absorb(c: Customer, hit: Hit, rules: ScoreRules, index: Mapping[str, list[int]]) -> None:
    if c.first_ts < 0 or (hit.ts, hit.channel) < (c.first_ts, c.channel):
        c.first_ts, c.channel = hit.ts, hit.channel
    c.last_ts = max(c.last_ts, hit.ts)
    idx = index.get(hit.kind)
    if idx:
        k = hit.ts // rules.bucket_ms
        counts = c.buckets.get(k)
        if counts is None:
            counts = c.buckets[k] = [0] * len(rules.activities)
        for i in idx:  # a bucket never needs more than the target: it saturates on its own
            if counts[i] < rules.activities[i].target:
                counts[i] += 1
    kind = hit.kind
    if hit.value >= 0 and kind in (_NPS, _CSAT):
        part = feedback_part(kind, hit.value)
        if (hit.ts, part) > (c.feedback_ts, c.feedback):  # latest wins; ties: the higher
            c.feedback, c.feedback_ts = part, hit.ts
    elif kind in _OPENS:
        c.had_support = True
        if hit.ticket not in c.open_tickets and len(c.open_tickets) < MAX_OPEN_TICKETS:
            c.open_tickets[hit.ticket] = hit.ts
    elif kind == _REPLIED:
        created = c.open_tickets.get(hit.ticket)
        if hit.author == "agent" and created is not None and created >= 0:
            c.last_reply_ms = max(0, hit.ts - created)
            c.open_tickets[hit.ticket] = -1  # replied: first reply already measured
    elif kind in _ENDS:
        c.had_support = True
        c.open_tickets.pop(hit.ticket, None)


# ---- pending activity (not evaluated yet) -----------------------------------------------
# Between two evaluations a batch only adds activity to a customer: counts in buckets no
# boundary the watermark reached yet can see, the latest event time, and possibly an earlier
# first event (ts, channel). That is a commutative merge, so the apply does it in Redis (op A of
# apply.lua) on a small record of its own without the worker reading the customer's state; the
# record is folded into the state when the customer is next evaluated (:func:`absorb_pending`).
# Record (MessagePack array): [user, last_ts, first_ts, channel, (bucket, activity, count)...],
# stored after a NUL byte behind the customer's packed state (JSON never contains one; the user
# is blanked when a state precedes it): no hash entry of its own, which would cost ~130 bytes.
# Counts are not capped there: absorbing caps each bucket at the target, as per event would.


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
    activities = rules.activities
    buckets = c.buckets
    for p in range(4, len(rec), 3):
        k, i = rec[p], rec[p + 1]
        if i >= n:  # an activity removed from the configuration since
            continue
        counts = buckets.get(k)
        if counts is None:
            counts = buckets[k] = [0] * n
        target = activities[i].target
        if counts[i] < target:  # a count above a since lowered target stays, as per event
            counts[i] = min(target, counts[i] + rec[p + 2])


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


def change_boundaries(c: Customer, after: int, until: int, rules: ScoreRules) -> list[int]:
    """Boundaries in (after, until] where a bucket enters or leaves the lookback."""
    n = rules.lookback_buckets
    found = {k + 1 for k in c.buckets} | {k + n + 1 for k in c.buckets}
    return sorted(b for b in found if after < b <= until)


def _peak(history: Iterable[tuple[int, int]], boundary: int, rules: ScoreRules) -> int:
    """Highest score in effect during the drop window before ``boundary``."""
    start = boundary - rules.drop_buckets
    in_effect = [s for b, s in history if b <= start]
    inside = [s for b, s in history if start < b < boundary]
    candidates = inside + in_effect[-1:]
    return max(candidates) if candidates else -1


def advance(
    c: Customer, hits: Iterable[Hit], watermark: int, rules: ScoreRules
) -> tuple[list[Transition], int | None]:
    """Fold hits in, evaluate every change boundary the watermark reached; (transitions, due)."""
    index = activity_index(rules)
    for hit in hits:
        _absorb(c, hit, rules, index)
    current = watermark // rules.bucket_ms
    transitions: list[Transition] = []
    for b in change_boundaries(c, c.evaluated, current, rules):
        counts = c.counts_at(b, rules)
        score = engagement_score(counts, rules)
        old = c.score
        if old >= 0:
            reasons = []
            if band_of(old) != AT_RISK and band_of(score) == AT_RISK:
                reasons.append(ENTERED_AT_RISK)
            peak = _peak(c.history, b, rules)
            if peak >= 0 and peak - score >= rules.drop_points:
                reasons.append(DROPPED)
                c.history = []
            if reasons:
                fell = _fell(c.counts_at(c.evaluated, rules), counts, rules)
                transitions += [Transition(b, r, old, score, fell) for r in reasons]
        c.history.append((b, score))
        c.score, c.evaluated = score, b
        _prune_history(c, b, rules)
    if current > c.evaluated and c.score >= 0:
        c.evaluated = current
    c.health = c.health_at(c.score, rules) if c.score >= 0 else -1
    for t in transitions:
        c.recent.append((t.boundary, t.reason, t.old_score, t.new_score))
    del c.recent[:-RECENT_TRANSITIONS]
    keep_from = current - rules.lookback_buckets  # the lookback at `current` still needs it
    c.buckets = {k: v for k, v in c.buckets.items() if k >= keep_from}
    nxt = change_boundaries(c, max(current, c.evaluated), 1 << 62, rules)
    return transitions, (nxt[0] * rules.bucket_ms if nxt else None)


def _prune_history(c: Customer, boundary: int, rules: ScoreRules) -> None:
    start = boundary + 1 - rules.drop_buckets  # the next evaluation's window start, at the earliest
    older = [h for h in c.history if h[0] <= start]
    c.history = older[-1:] + [h for h in c.history if h[0] > start]


def _fell(before: Sequence[int], after: Sequence[int], rules: ScoreRules) -> tuple[str, ...]:
    was, now = fractions(before, rules), fractions(after, rules)
    present = rules.present()
    rows = zip(rules.activities, present, was, now, strict=True)
    return tuple(a.name for a, p, x, y in rows if p and y < x)


# ---- storage format -----------------------------------------------------------------------
# One JSON array per customer. Buckets are stored per activity as a dense run of one-character
# counts (0-9a-zA-Z; counts never exceed the target) from a start offset relative to the last
# evaluated boundary, so a daily-active customer costs ~1 byte per bucket and activity. Targets
# above 61 fall back to a list of numbers for that activity.

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(DIGITS)}


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


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Packed)


def _runs(c: Customer) -> list[tuple[int, int, str | list[int]]]:
    if not c.buckets:
        return []
    lo, hi = min(c.buckets), max(c.buckets)
    out: list[tuple[int, int, str | list[int]]] = []
    n = len(next(iter(c.buckets.values())))
    for i in range(n):
        row = [c.buckets[k][i] if k in c.buckets else 0 for k in range(lo, hi + 1)]
        first = next((j for j, v in enumerate(row) if v), None)
        if first is None:
            continue
        last = max(j for j, v in enumerate(row) if v)
        row = row[first : last + 1]
        dense = "".join(DIGITS[v] for v in row) if max(row) < len(DIGITS) else row
        out.append((i, lo + first - c.evaluated, dense))
    return out


def pack(c: Customer) -> str:
    p = _Packed(
        c.user, c.evaluated, c.score, c.health, c.first_ts, c.channel, c.last_ts, _runs(c),
        c.history, c.recent, (c.feedback, c.feedback_ts), c.open_tickets, c.last_reply_ms,
        c.had_support,
    )  # fmt: skip
    return _encoder.encode(p).decode()


def unpack(value: bytes | str, n_activities: int) -> Customer:
    """The evaluated state of a stored value (a pending record after it is not looked at; a
    value that is only a pending record gives the customer, never evaluated)."""
    raw = value.encode() if isinstance(value, str) else value
    if b"\0" in raw:
        state, pending = split_value(raw)
        if state is None:
            return Customer(pending[0] if pending else "")
        raw = state
    p = _decoder.decode(raw)
    buckets: dict[int, list[int]] = {}
    for i, start, run in p.b:
        if i >= n_activities:  # an activity removed from the configuration since
            continue
        values = [_VALUE[ch] for ch in run] if isinstance(run, str) else run
        for j, v in enumerate(values):
            if v:
                k = p.e + start + j
                counts = buckets.get(k)
                if counts is None:
                    counts = buckets[k] = [0] * n_activities
                counts[i] = v
    return Customer(
        p.u, p.e, p.s, p.h, p.f, p.ch, p.l, buckets, list(p.hi), list(p.r), p.fb[0], p.fb[1],
        dict(p.t), p.rp, p.sup,
    )  # fmt: skip
