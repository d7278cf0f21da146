"""Engagement score, health score and churn-risk transitions of one customer. Pure.

Definitions (metric-definitions.md, "Engagement score and churn risk"):

* Time is cut into buckets of ``bucket_ms`` (a day by default; the demo uses a minute). The score
  is evaluated at bucket *boundaries*: the score at boundary ``b`` (instant ``b * bucket_ms``)
  counts the customer's activities with ``(b - n) * bucket_ms <= ts < b * bucket_ms``, where
  ``n = lookback / bucket`` -- the last ``n`` whole buckets before the instant (each activity
  has its own lookback, by default the global one).
* An activity with a half-life instead counts a *decayed* amount ``D`` (see
  :func:`stream.metrics.score.decay.decay_step`): 32-bit fixed point, at each boundary
  multiplied by ``r = floor(2^32 * 2^(-bucket/half_life))`` and rounded down, forgotten (0) once
  below 1/256 of the target, then the bucket that just ended is added with weight 1; it never
  exceeds 64 x target. So an event weighs ``0.5^(age / half_life)``, its age counted from the
  end of its bucket (rounding down loses < 2^-31 of the amount per boundary). Integer
  arithmetic on per-bucket counts that are final, applied in boundary order: the stream and a
  batch recomputation agree to the bit, whatever the batch cuts (no float drift).
* score = round_half_up(100 * sum(w_a * min(amount_a / target_a, 1)) / sum(w_a)) over the
  *present* factors. A factor is missing when none of its event types can reach the score (their
  family is neither the home family nor relayed to it, see
  :data:`stream.metrics.score.rules.HOME_FAMILY`); it is dropped and the other weights
  renormalised. A factor the customer simply did not do counts 0 -- that is what makes silence
  lower the score.
* Bands: 0-40 ``at_risk`` (very disengaged), 41-75 ``engaged`` (somewhat), 76-100 ``highly``.
* Transitions, decided at each boundary the score is evaluated at, in boundary order:
  ``entered_at_risk`` -- the previous evaluation's band was not ``at_risk`` and this one is (a
  customer's first evaluation has no previous band and is never a transition); ``dropped`` -- the
  score is at least ``drop_points`` below the highest score in effect during the preceding
  ``drop_buckets`` buckets since the rule last fired (firing re-arms it from the new score).
* Health = weighted blend of the engagement score, the latest NPS (0-10 -> x10) or CSAT (1-5 ->
  (s-1) x 25; 0-5 -> s x 20 with ``csat_scale`` 0-5) response, and support experience (100 -
  20 per open ticket - a penalty growing with the latest first-reply time beyond its target --
  business time when the business-hours mode is on, target included); a factor the customer
  has no data for is dropped and the other weights renormalised. Same bands.
* Support experience follows the ticket metrics' semantics (:mod:`stream.metrics.support`):
  ticket events wait until the watermark passes them, then apply in event-time order (same
  millisecond: created, replied, solved, reopened, closed). A ticket is open from its creation
  or a reopen until a solve or close (a close is final; a creation does not reopen a ticket
  solved before it); its first reply is the first *public agent* reply after its creation, the
  second one for a ticket an agent created (of duplicate creations in one millisecond, one not
  by an agent counts); the latest first reply (in event time) is scored.
  So the part does not depend on arrival order or batch cuts.

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

This module is that definition and nothing else: pure functions over a :class:`Customer` and
the :class:`~stream.metrics.score.rules.ScoreRules`, no I/O and no storage format, so the batch
reference in the tests, the keyed state (:mod:`stream.metrics.score.state`) and the read side
all follow one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import NamedTuple

from stream.contract.types import EventType
from stream.metrics.score.decay import decay_step
from stream.metrics.score.rules import AT_RISK, ScoreRules, band_of

__all__ = [
    "DROPPED",
    "DUE_SEARCH",
    "ENTERED_AT_RISK",
    "MAX_TICKETS",
    "OPEN",
    "RECENT_TRANSITIONS",
    "ActivityHit",
    "Customer",
    "SupportHit",
    "Transition",
    "activity_index",
    "advance",
    "blend",
    "change_boundaries",
    "contributions",
    "engagement_score",
    "feedback_part",
    "fractions",
    "round_half_up",
    "support_part",
]

ENTERED_AT_RISK, DROPPED = "entered_at_risk", "dropped"
#: Tickets remembered per customer: when a new one would exceed this, the ended (or never
#: opened) ticket touched longest ago makes room; with all of them open, the new one is not
#: remembered (the support part counts at most 5 open tickets).
MAX_TICKETS = 16
#: Transitions remembered per customer for the read side.
RECENT_TRANSITIONS = 3
#: The due-time search walks at most this many boundaries ahead; a customer whose score cannot
#: change before is woken there and searched again (only long half-lives at saturation get that
#: far: 6 half-lives of 30 buckets are 180).
DUE_SEARCH = 512


def round_half_up(x: Fraction) -> int:
    return int(x + Fraction(1, 2))


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


def feedback_part(kind: str, value: int, csat_min: int = 1) -> int:
    """NPS 0-10 and CSAT ``csat_min``-5 (1-5 or 0-5) on one 0-100 scale."""
    if kind == _NPS:
        return value * 10
    return (value - csat_min) * 100 // (5 - csat_min)


def support_part(open_tickets: int, last_reply_ms: int | None, rules: ScoreRules) -> int:
    """100, minus 20 per open ticket, minus up to 40 as the latest first reply takes up to 3x
    longer than its target."""
    penalty = Fraction(20 * min(open_tickets, 5))
    if last_reply_ms is not None and last_reply_ms > rules.reply_target_ms:
        over = Fraction(last_reply_ms - rules.reply_target_ms, 2 * rules.reply_target_ms)
        penalty += 40 * min(over, Fraction(1))
    return max(0, round_half_up(100 - penalty))


# ---- per-customer state -------------------------------------------------------------------


class ActivityHit(NamedTuple):
    """One event as the score needs it: its time and what it is."""

    ts: int
    kind: str
    channel: str  # bounded acquisition-channel label
    ticket: str  # ticket id (support events) or ""
    value: int  # survey score or -1
    author: str  # ticket event author or ""
    public: bool = True  # ticket_replied: not a private note


class SupportHit(NamedTuple):
    """A ticket event waiting for the watermark; sorts in the order it is applied."""

    ts: int
    order: int  # same-millisecond order: created, replied, solved, reopened, closed
    ticket: str
    flag: bool  # created: by an agent; replied: (always) a public agent reply


#: One remembered ticket: [created ts (-1: not seen), public agent replies since the creation
#: (-1: first reply measured), created by an agent (0/1), status, last event ts].
TICKET_CREATED, TICKET_REPLIES, TICKET_BY_AGENT, TICKET_STATUS, TICKET_LAST = range(5)
#: Ticket status: seen only in a reply, open, solved, closed (final).
UNSEEN, OPEN, SOLVED, CLOSED = range(4)


class Transition(NamedTuple):
    boundary: int  # bucket index: the event-time instant is boundary * bucket_ms
    reason: str
    old_score: int
    new_score: int
    fell: tuple[str, ...]  # activities whose saturation fell since the previous evaluation


@dataclass
class Customer:
    """What is kept per customer (packed into one Redis hash field by
    :func:`stream.metrics.score.codec.pack`)."""

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
    #: ticket id -> [created, replies, by agent, status, last ts] (see :data:`TICKET_CREATED`)
    tickets: dict[str, list[int]] = field(default_factory=dict)
    last_reply_ms: int = -1  # latest first-reply time (-1: none)
    had_support: bool = False
    #: decayed activity -> its amount at ``evaluated`` (buckets before it are folded in; absent: 0)
    decayed: dict[int, int] = field(default_factory=dict)
    #: ticket events not yet passed by the watermark
    support_pending: list[SupportHit] = field(default_factory=list)

    @property
    def open_tickets(self) -> int:
        return sum(1 for t in self.tickets.values() if t[TICKET_STATUS] == OPEN)

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
        sup = support_part(self.open_tickets, reply, rules) if self.had_support else None
        return blend([(we, score), (wf, fb), (ws, sup)])


def activity_index(rules: ScoreRules) -> dict[str, list[int]]:
    """Event type -> the activities it counts for."""
    return rules.index


# Plain strings: Enum attribute access costs ~0.3 µs, paid per event here.
_NPS, _CSAT = EventType.NPS_RESPONSE.value, EventType.CSAT_RESPONSE.value
_REPLIED = EventType.TICKET_REPLIED.value
_CREATED = EventType.TICKET_CREATED.value
#: Ticket event -> its same-millisecond order (the ticket metrics' order).
_TICKET_ORDER = {
    _CREATED: 0,
    _REPLIED: 1,
    EventType.TICKET_SOLVED.value: 2,
    EventType.TICKET_REOPENED.value: 3,
    EventType.TICKET_CLOSED.value: 4,
}
_CREATE, _REPLY, _SOLVE, _REOPEN, _CLOSE = range(5)


def _absorb(
    c: Customer, hit: ActivityHit, rules: ScoreRules, index: Mapping[str, list[int]]
) -> None:
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
        part = feedback_part(kind, hit.value, rules.csat_min)
        if (hit.ts, part) > (c.feedback_ts, c.feedback):  # latest wins; ties: the higher
            c.feedback, c.feedback_ts = part, hit.ts
    else:
        order = _TICKET_ORDER.get(kind)
        if order is None:
            return
        if order == _REPLY:
            if hit.author != "agent" or not hit.public:
                return  # bot, requester and private replies never count
            flag = True
        else:
            flag = order == _CREATE and hit.author == "agent"
        c.support_pending.append(SupportHit(hit.ts, order, hit.ticket, flag))


def _settle_support(c: Customer, watermark: int, rules: ScoreRules) -> None:
    """Apply the ticket events the watermark passed, in event-time order (see the module doc):
    no later-arriving event can precede them, so the result is final."""
    pending = c.support_pending
    if not pending or min(pending).ts >= watermark:
        return
    ready = sorted(h for h in pending if h.ts < watermark)
    c.support_pending = [h for h in pending if h.ts >= watermark]
    for hit in ready:
        _apply_ticket_event(c, hit, rules)


def _ticket(c: Customer, ticket: str) -> list[int] | None:
    """The remembered ticket, remembering it if there is room (see :data:`MAX_TICKETS`)."""
    t = c.tickets.get(ticket)
    if t is not None:
        return t
    if len(c.tickets) >= MAX_TICKETS:
        ended = [(v[TICKET_LAST], k) for k, v in c.tickets.items() if v[TICKET_STATUS] != OPEN]
        if not ended:
            return None
        del c.tickets[min(ended)[1]]
    t = c.tickets[ticket] = [-1, 0, 0, UNSEEN, -1]
    return t


def _apply_ticket_event(c: Customer, hit: SupportHit, rules: ScoreRules) -> None:
    t = _ticket(c, hit.ticket)
    if t is None:
        return
    t[TICKET_LAST] = hit.ts
    order, status = hit.order, t[TICKET_STATUS]
    if order == _REPLY:
        # only replies after the creation count; an agent-created ticket's first public agent
        # reply is the agent's opening comment, so its second one is the first reply
        if t[TICKET_CREATED] >= 0 and t[TICKET_REPLIES] >= 0:
            t[TICKET_REPLIES] += 1
            if t[TICKET_REPLIES] == (2 if t[TICKET_BY_AGENT] else 1):
                c.last_reply_ms = rules.reply_ms(t[TICKET_CREATED], hit.ts)
                t[TICKET_REPLIES] = -1
        return
    c.had_support = True
    if order == _CREATE:
        if t[TICKET_CREATED] < 0:  # of duplicate creations, the first in event time counts
            t[TICKET_CREATED], t[TICKET_BY_AGENT] = hit.ts, int(hit.flag)
        if status == UNSEEN:  # a creation never reopens a ticket solved or closed before it
            t[TICKET_STATUS] = OPEN
    elif order == _SOLVE:
        if status != CLOSED:
            t[TICKET_STATUS] = SOLVED
    elif order == _REOPEN:
        if status in (UNSEEN, SOLVED):
            t[TICKET_STATUS] = OPEN
    else:  # closed: final
        t[TICKET_STATUS] = CLOSED


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
    c: Customer, hits: Iterable[ActivityHit], watermark: int, rules: ScoreRules
) -> tuple[list[Transition], int | None]:
    """Fold hits in, evaluate every change boundary the watermark reached; (transitions, due)."""
    index = activity_index(rules)
    for hit in hits:
        _absorb(c, hit, rules, index)
    _settle_support(c, watermark, rules)
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
    # a ticket event settles once the watermark is past it
    support_due = min(c.support_pending).ts + 1 if c.support_pending else None
    if rules.decays:
        _fold_decayed(c, rules)
        due = _due_walk(c, current, rules)
        return transitions, _earliest(None if due is None else due * rules.bucket_ms, support_due)
    nxt = change_boundaries(c, max(current, c.evaluated), 1 << 62, rules)
    return transitions, _earliest(nxt[0] * rules.bucket_ms if nxt else None, support_due)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else (a if b is None else min(a, b))


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
