"""Engagement score, health score and churn-risk transitions of one customer. Pure.

Definitions (metric-definitions.md, "Engagement score and churn risk"):

* Time is cut into buckets of ``bucket_ms`` (a day by default; the demo uses a minute). The score
  is evaluated at bucket *boundaries*: the score at boundary ``b`` (instant ``b * bucket_ms``)
  counts the customer's activities with ``(b - n) * bucket_ms <= ts < b * bucket_ms``, where
  ``n = lookback / bucket`` -- the last ``n`` whole buckets before the instant (each activity
  has its own lookback, by default the global one).
* An activity with a half-life instead counts a *decayed* amount ``D`` (see :func:`decay_step`):
  32-bit fixed point, at each boundary multiplied by ``r = floor(2^32 * 2^(-bucket/half_life))``
  and rounded down, forgotten (0) once below 1/256 of the target, then the bucket that just ended
  is added with weight 1; it never exceeds 64 x target. So an event weighs ``0.5^(age /
  half_life)``, its age counted from the end of its bucket (rounding down loses < 2^-31 of the
  amount per boundary). Integer
  arithmetic on per-bucket counts that are final, applied in boundary order: the stream and a
  batch recomputation agree to the bit, whatever the batch cuts (no float drift).
* score = round_half_up(100 * sum(w_a * min(amount_a / target_a, 1)) / sum(w_a)) over the
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
  the latest first-reply time beyond its target -- business time when the business-hours mode
  is on, target included); a factor the customer has no data for is dropped and the other
  weights renormalised. Same bands.

Why boundaries: a boundary ``b`` is only evaluated once the partition watermark has reached
``b * bucket_ms``; every event accepted later has ``ts >= watermark``, so buckets before ``b`` are
final and the result is the same whatever the arrival order and batch cuts. Between two
boundaries where nothing enters or leaves the lookback the score cannot change, so only those
*change boundaries* are evaluated; the customer's due time is the next one, which is how silence
re-scores a customer without any event from them.

With decay the amounts change at every boundary, so a customer is walked boundary by boundary
(:class:`_Walk`; quiet stretches -- nothing decaying, nothing entering or leaving -- are jumped)
and its due time is the first boundary at which the *integer score* differs, found by walking
forward over the known buckets (in silence the score can only fall, and every decayed amount is
0 within ~14 half-lives, so the search ends; it is cut at :data:`DUE_SEARCH` boundaries, an early
wake-up that re-checks). Buckets before the evaluated boundary are folded into ``D`` and dropped:
the state is one integer per decayed activity, not a horizon of buckets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property, partial
from typing import Any, NamedTuple

import msgspec

from stream.contract.types import FAMILY_OF, EventType, Family
from stream.metrics.business_hours import BusinessHours

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
#: Decayed amounts are fixed point with this many fraction bits.
FIXED_BITS = 32
ONE = 1 << FIXED_BITS
#: A decayed amount never exceeds this many times the target (so a burst is remembered for at
#: most log2(64) = 6 half-lives of silence before the factor desaturates) ...
DECAY_CAP = 64
#: ... and is forgotten once below 1/256 of the target: the factor loses < 0.4 % of its weight
#: at that step, and a silent customer's amounts are all 0 within 6 + 8 = 14 half-lives.
DECAY_FORGET = 256
#: The due-time search walks at most this many boundaries ahead; a customer whose score cannot
#: change before is woken there and searched again (only long half-lives at saturation get that
#: far: 6 half-lives of 30 buckets are 180).
DUE_SEARCH = 512


def band_of(score: int) -> str:
    if score <= 40:
        return AT_RISK
    return ENGAGED if score <= 75 else HIGHLY


def bucket_label(score: int) -> str:
    """The score-distribution bucket (its upper bound) of a score."""
    return str(next(b for b in SCORE_BOUNDS if score <= b))


def round_half_up(x: Fraction) -> int:
    return int(x + Fraction(1, 2))


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


@dataclass(frozen=True)
class Activity:
    name: str
    events: frozenset[str]
    weight: int
    target: int
    lookback_buckets: int | None = None  # None: the rules' lookback
    half_life_buckets: int = 0  # > 0: decay with this half-life instead of a lookback

    @property
    def decays(self) -> bool:
        return self.half_life_buckets > 0

    @property
    def cap(self) -> int:
        """Most events one bucket needs to hold: more cannot change any score."""
        return DECAY_CAP * self.target if self.decays else self.target

    @property
    def unit(self) -> int:
        """What one event adds to the activity's amount (fixed point when it decays)."""
        return ONE if self.decays else 1


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
    #: with the business-hours mode on, the support part judges first replies (and its target)
    #: in business time, as the ticket metrics report them
    business_hours: BusinessHours | None = None

    def reply_ms(self, created_ms: int, replied_ms: int) -> int:
        """A first reply's time as the support part judges it."""
        if self.business_hours is None:
            return max(0, replied_ms - created_ms)
        return self.business_hours.business_ms(created_ms, replied_ms)

    @cached_property
    def _integer_weights(self) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        """Per activity the multiplier of min(amount, full), the amount ``full`` that saturates
        it, and the common denominator, so the score is exact integer arithmetic (per customer
        and boundary: Fraction was too slow)."""
        present = self.present()
        total = sum(a.weight for a, p in zip(self.activities, present, strict=True) if p)
        full = tuple(a.target * a.unit for a in self.activities)
        common = math.lcm(*full) if self.activities else 1
        mult = tuple(
            100 * a.weight * (common // f) if p else 0
            for a, f, p in zip(self.activities, full, present, strict=True)
        )
        return mult, full, common * total

    @cached_property
    def lookbacks(self) -> tuple[int, ...]:
        """Per activity its lookback in buckets (0 for a decayed one: it keeps no window)."""
        return tuple(
            0
            if a.decays
            else (self.lookback_buckets if a.lookback_buckets is None else a.lookback_buckets)
            for a in self.activities
        )

    @cached_property
    def max_lookback(self) -> int:
        return max(self.lookbacks, default=0)

    @cached_property
    def uniform_lookback(self) -> int | None:
        """The one lookback every activity has (the common case), else None."""
        distinct = set(self.lookbacks)
        return distinct.pop() if len(distinct) == 1 and not self.decays else None

    @cached_property
    def decays(self) -> bool:
        return any(a.decays for a in self.activities)

    @cached_property
    def factors(self) -> tuple[int, ...]:
        """Per activity its decay factor per bucket (0 for a lookback activity)."""
        return tuple(decay_factor(a.half_life_buckets) if a.decays else 0 for a in self.activities)

    @cached_property
    def caps(self) -> tuple[int, ...]:
        return tuple(a.cap for a in self.activities)

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

    def score(self, amounts: Sequence[int]) -> int:
        """The score of the amounts: counts in the lookback, fixed-point decayed amounts."""
        mult, full, denominator = self._integer_weights
        if not denominator:
            return 0
        num = sum(m * min(c, f) for m, c, f in zip(mult, amounts, full, strict=True))
        return (2 * num + denominator) // (2 * denominator)  # round half up


def fractions(amounts: Sequence[int], rules: ScoreRules) -> list[Fraction]:
    """Each activity's saturation min(amount / target, 1)."""
    pairs = zip(amounts, rules.activities, strict=True)
    return [min(Fraction(c, a.target * a.unit), Fraction(1)) for c, a in pairs]


def contributions(amounts: Sequence[int], rules: ScoreRules) -> list[Fraction]:
    """Points each present activity adds (renormalised); missing ones add 0."""
    present = rules.present()
    total = sum(a.weight for a, p in zip(rules.activities, present, strict=True) if p)
    if not total:
        return [Fraction(0)] * len(rules.activities)
    return [
        Fraction(100 * a.weight, total) * f if p else Fraction(0)
        for a, p, f in zip(rules.activities, present, fractions(amounts, rules), strict=True)
    ]


def engagement_score(amounts: Sequence[int], rules: ScoreRules) -> int:
    return rules.score(amounts)


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
    fell: tuple[str, ...]  # activities whose saturation fell since the previous evaluation


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
    #: decayed activity -> its amount at ``evaluated`` (buckets before it are folded in; absent: 0)
    decayed: dict[int, int] = field(default_factory=dict)

    @property
    def band(self) -> str | None:
        return band_of(self.score) if self.score >= 0 else None

    def counts_at(self, boundary: int, rules: ScoreRules) -> list[int]:
        """Lookback counts per activity at a boundary (0 for decayed activities)."""
        out = [0] * len(rules.activities)
        uniform = rules.uniform_lookback
        if uniform is not None:
            lo = boundary - uniform
            for k, counts in self.buckets.items():
                if lo <= k < boundary:
                    for i, c in enumerate(counts):
                        out[i] += c
            return out
        lookbacks = rules.lookbacks
        for k, counts in self.buckets.items():
            age = boundary - k  # 1 for the bucket that ends at the boundary
            if age > 0:
                for i, c in enumerate(counts):
                    if c and age <= lookbacks[i]:
                        out[i] += c
        return out

    def amounts(self, rules: ScoreRules) -> list[int]:
        """What the score counts per activity at the last evaluated boundary: the lookback count,
        or the fixed-point decayed amount."""
        out = self.counts_at(self.evaluated, rules)
        for i, d in self.decayed.items():
            if i < len(out):
                out[i] = d
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
        caps = rules.caps
        for i in idx:  # a bucket never needs more than its cap: it saturates on its own
            if counts[i] < caps[i]:
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
            c.last_reply_ms = rules.reply_ms(created, hit.ts)
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
# Counts are not capped there: absorbing caps each bucket (at the target, or at DECAY_CAP x the
# target for a decayed activity), as per event would.


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
    """Boundaries in (after, until] where a bucket enters or leaves a lookback."""
    n = rules.uniform_lookback
    if n is not None:  # the common case, on the hot path
        found = {k + 1 for k in c.buckets} | {k + n + 1 for k in c.buckets}
    else:
        spans = {0, *rules.lookbacks}  # 0: the bucket enters (at its end)
        found = {k + m + 1 for k in c.buckets for m in spans}
    return sorted(b for b in found if after < b <= until)


def _peak(history: Iterable[tuple[int, int]], boundary: int, rules: ScoreRules) -> int:
    """Highest score in effect during the drop window before ``boundary``."""
    start = boundary - rules.drop_buckets
    in_effect = [s for b, s in history if b <= start]
    inside = [s for b, s in history if start < b < boundary]
    candidates = inside + in_effect[-1:]
    return max(candidates) if candidates else -1


def _evaluate(
    c: Customer, b: int, score: int, before: Callable[[], Sequence[int]], after: Sequence[int],
    rules: ScoreRules,
) -> list[Transition]:  # fmt: skip
    """Record the score at boundary ``b``; the transitions it makes (``before``: the amounts at
    the previous evaluation, asked for only when there is one)."""
    old = c.score
    out: list[Transition] = []
    if old >= 0:
        reasons = []
        if band_of(old) != AT_RISK and band_of(score) == AT_RISK:
            reasons.append(ENTERED_AT_RISK)
        peak = _peak(c.history, b, rules)
        if peak >= 0 and peak - score >= rules.drop_points:
            reasons.append(DROPPED)
            c.history = []
        if reasons:
            fell = _fell(before(), after, rules)
            out = [Transition(b, r, old, score, fell) for r in reasons]
    c.history.append((b, score))
    c.score, c.evaluated = score, b
    _prune_history(c, b, rules)
    return out


class _Walk:
    """A customer's amounts at boundary ``at``, moved on one boundary at a time (decay rules).

    ``amounts`` starts from the stored state: lookback counts at ``at`` and the decayed amounts
    (which are those at ``at`` when ``at`` is the evaluated boundary, else 0: nothing before
    the first bucket). Each :meth:`step` adds the bucket that ends, drops the ones that leave a
    lookback and decays the rest -- O(activities), no scan of the buckets."""

    def __init__(self, c: Customer, at: int, rules: ScoreRules) -> None:
        self.at = at
        self.buckets = c.buckets
        self.amounts = c.counts_at(at, rules)
        if at == c.evaluated:
            for i, d in c.decayed.items():
                if i < len(self.amounts):
                    self.amounts[i] = d
        acts = rules.activities
        self._windows = [(i, n) for i, n in enumerate(rules.lookbacks) if n]
        self._decays = [
            (i, f, a.target) for i, (a, f) in enumerate(zip(acts, rules.factors, strict=True))
            if a.decays
        ]  # fmt: skip
        self._spans = sorted({0, *(n for _, n in self._windows)})

    def step(self) -> None:
        k = self.at  # the bucket that ends at boundary at + 1
        a = self.amounts
        row = self.buckets.get(k)
        for i, n in self._windows:
            old = self.buckets.get(k - n)
            a[i] += (row[i] if row else 0) - (old[i] if old else 0)
        for i, factor, target in self._decays:
            if a[i] or (row and row[i]):
                a[i] = decay_step(a[i], row[i] if row else 0, factor, target)
        self.at = k + 1

    def decayed(self) -> dict[int, int]:
        """The non-zero decayed amounts, as :attr:`Customer.decayed` keeps them."""
        a = self.amounts
        return {i: a[i] for i, _, _ in self._decays if a[i]}

    def quiet(self) -> bool:
        """Nothing decays: the amounts only change where a bucket enters or leaves."""
        a = self.amounts
        return not any(a[i] for i, _, _ in self._decays)

    def next_change(self) -> int | None:
        """The first boundary after ``at`` where a bucket enters or leaves (None: never)."""
        at = self.at
        found = [k + n + 1 for k in self.buckets for n in self._spans if k + n + 1 > at]
        return min(found, default=None)


def _advance_walk(c: Customer, current: int, rules: ScoreRules) -> list[Transition]:
    """Evaluate every boundary in (evaluated, current] where the score changes (decay rules)."""
    if c.evaluated >= 0:
        start = c.evaluated
    elif c.buckets:
        start = min(c.buckets)  # the first boundary that sees anything is start + 1
    else:
        return []
    if start >= current:
        return []
    walk = _Walk(c, start, rules)
    transitions: list[Transition] = []
    while walk.at < current:
        if walk.quiet():
            nxt = walk.next_change()
            if nxt is None or nxt > current:
                break
            walk.at = nxt - 1  # nothing changes before: jump
        before = list(walk.amounts)
        walk.step()
        score = rules.score(walk.amounts)
        if score != c.score:  # an unchanged score makes no transition (see docs/metrics.md)
            transitions += _evaluate(c, walk.at, score, before.copy, walk.amounts, rules)
    if c.score >= 0:  # amounts at `current` (advance moves `evaluated` there); a walk that
        c.decayed = walk.decayed()  # stopped short was quiet: they are all 0 then
    return transitions


def _due_walk(c: Customer, current: int, rules: ScoreRules) -> int | None:
    """The first boundary after ``current`` at which the score differs, walking over the known
    buckets (decay rules; an early wake-up after :data:`DUE_SEARCH` boundaries)."""
    if c.score >= 0:
        start = c.evaluated
    elif c.buckets:
        start = min(c.buckets)
    else:
        return None
    if c.score == 0 and all(k < start for k in c.buckets):
        return None  # silence cannot lower a 0, and nothing is pending
    walk = _Walk(c, start, rules)
    for _ in range(DUE_SEARCH):
        if walk.quiet():
            nxt = walk.next_change()
            if nxt is None:
                return None
            walk.at = nxt - 1
        walk.step()
        if rules.score(walk.amounts) != c.score:
            return walk.at
    return walk.at


def advance(
    c: Customer, hits: Iterable[Hit], watermark: int, rules: ScoreRules
) -> tuple[list[Transition], int | None]:
    """Fold hits in, evaluate every change boundary the watermark reached; (transitions, due)."""
    index = activity_index(rules)
    for hit in hits:
        _absorb(c, hit, rules, index)
    current = watermark // rules.bucket_ms
    transitions: list[Transition] = []
    if rules.decays:
        transitions = _advance_walk(c, current, rules)
    else:
        for b in change_boundaries(c, c.evaluated, current, rules):
            counts = c.counts_at(b, rules)
            score = engagement_score(counts, rules)
            before = partial(c.counts_at, c.evaluated, rules)
            transitions += _evaluate(c, b, score, before, counts, rules)
    if current > c.evaluated and c.score >= 0:
        c.evaluated = current
    c.health = c.health_at(c.score, rules) if c.score >= 0 else -1
    for t in transitions:
        c.recent.append((t.boundary, t.reason, t.old_score, t.new_score))
    del c.recent[:-RECENT_TRANSITIONS]
    keep_from = current - rules.max_lookback  # the lookbacks at `current` still need it
    c.buckets = {k: v for k, v in c.buckets.items() if k >= keep_from}
    if rules.decays:
        _fold_decayed(c, rules)
        due = _due_walk(c, current, rules)
        return transitions, (None if due is None else due * rules.bucket_ms)
    nxt = change_boundaries(c, max(current, c.evaluated), 1 << 62, rules)
    return transitions, (nxt[0] * rules.bucket_ms if nxt else None)


def _fold_decayed(c: Customer, rules: ScoreRules) -> None:
    """Drop the decayed activities' counts of buckets before the evaluated boundary: they are in
    ``c.decayed`` now. Buckets left with no count go."""
    if c.evaluated < 0:
        return
    decayed = [i for i, a in enumerate(rules.activities) if a.decays]
    for k in [k for k in c.buckets if k < c.evaluated]:
        row = c.buckets[k]
        for i in decayed:
            row[i] = 0
        if not any(row):
            del c.buckets[k]


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
# counts (0-9a-zA-Z; counts never exceed the cap) from a start offset relative to the last
# evaluated boundary, so a daily-active customer costs ~1 byte per bucket and activity. Caps
# above 61 fall back to a list of numbers for that activity. A decayed activity keeps no buckets
# before the evaluated boundary, only its amount (an integer, ~13 digits; none when 0), appended
# last so that values written before decay existed still decode.

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
    d: list[tuple[int, int]] = []  # (decayed activity, amount); absent in older values


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
        c.had_support, sorted(c.decayed.items()),
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
        dict(p.t), p.rp, p.sup, {i: d for i, d in p.d if i < n_activities},
    )  # fmt: skip
