"""Batch reference for engagement scores and churn-risk transitions: plain Python, no engine.

Written from metric-definitions.md independently of ``stream.metrics.score``: it evaluates the
score at *every* bucket boundary (not only where something changes) by scanning the customer's
events, which is slow and obviously right.

A decayed activity (docs/metrics.md, "Half-life decay") follows the written definition from
the customer's first bucket on: at each boundary, amount = floor(amount x r / 2^32), 0 if below
target / 256, plus 2^32 x the events of the bucket that just ended, at most 64 x target x 2^32;
r = floor(2^32 x 2^(-bucket / half-life)), here from decimal arithmetic rather than the engine's
integer root search, and the score from Fractions rather than its common-denominator integers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction
from typing import Any

from stream.contract.types import FAMILY_OF, EventType, Family
from tests.support.business_reference import BruteBusinessHours

#: Every family reaches the score when all are relayed to the home partitions (the default).
ALL_FAMILIES = frozenset(f.value for f in Family)

FIXED = 2**32


def _band(score: int) -> str:
    return "at_risk" if score <= 40 else ("engaged" if score <= 75 else "highly")


def decay_factor(half_life_buckets: int) -> int:
    """floor(2^32 * 2^(-1/h)) with 60 significant digits (the value is irrational for h > 1, so
    it is never close enough to an integer for that to round the wrong way)."""
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(2) ** (Decimal(32) - Decimal(1) / Decimal(half_life_buckets))
        return int(value.to_integral_value(rounding=ROUND_FLOOR))


def reference_scores(
    events: list[dict[str, Any]],
    activities: dict[str, tuple[list[str], int, int]],  # name -> (events, weight, target)
    bucket_ms: int,
    lookback_buckets: int,
    drop_points: int,
    drop_buckets: int,
    watermark: int,
    families: Collection[str] = ALL_FAMILIES,
    modes: Mapping[str, tuple[str, int]] | None = None,
) -> tuple[dict[str, list[tuple[int, int]]], list[tuple[str, int, str, int, int]]]:
    """Per user the (boundary, score) series up to the watermark; the transitions
    (user, boundary, reason, old, new) in boundary order per user. ``families``: those whose
    events reach the score (the home family and the relayed ones); an activity of none of them
    is a missing factor.

    ``modes``: activity -> ("lookback", buckets) or ("half_life", buckets); an activity not
    named counts over ``lookback_buckets``."""
    modes = modes or {}
    present = {
        name: any(FAMILY_OF[EventType(e)].value in families for e in evs)
        for name, (evs, _, _) in activities.items()
    }
    total_w = sum(w for name, (_, w, _) in activities.items() if present[name])
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    series: dict[str, list[tuple[int, int]]] = {}
    transitions: list[tuple[str, int, str, int, int]] = []
    last = watermark // bucket_ms
    for user, evs in sorted(by_user.items()):
        counted = [e for e in evs if any(e["type"] in a[0] for a in activities.values())]
        if not counted:
            continue
        first = min(e["ts"] for e in counted) // bucket_ms + 1
        scores: list[tuple[int, int]] = []
        armed_from = first
        decayed = {name: 0 for name in activities}  # fixed-point amount at boundary b - 1
        for b in range(first, last + 1):
            hi = b * bucket_ms
            points = Fraction(0)
            for name, (evs_, w, target) in activities.items():
                mode, span = modes.get(name, ("lookback", lookback_buckets))
                if mode == "half_life":
                    ended = sum(
                        1 for e in counted if e["type"] in evs_ and hi - bucket_ms <= e["ts"] < hi
                    )
                    amount = decayed[name] * decay_factor(span) // FIXED
                    if amount < Fraction(target * FIXED, 256):
                        amount = 0
                    if ended:
                        amount = min(amount + ended * FIXED, 64 * target * FIXED)
                    decayed[name] = amount
                    saturation = min(Fraction(amount, target * FIXED), Fraction(1))
                else:
                    lo = hi - span * bucket_ms
                    n = sum(1 for e in counted if e["type"] in evs_ and lo <= e["ts"] < hi)
                    saturation = min(Fraction(n, target), Fraction(1))
                if present[name]:
                    points += Fraction(w * 100, total_w) * saturation
            score = int(points + Fraction(1, 2))
            if scores:
                old = scores[-1][1]
                if _band(old) != "at_risk" and _band(score) == "at_risk":
                    transitions.append((user, b, "entered_at_risk", old, score))
                window = [s for bb, s in scores if max(b - drop_buckets, armed_from) <= bb < b]
                if window and max(window) - score >= drop_points:
                    transitions.append((user, b, "dropped", old, score))
                    armed_from = b
            scores.append((b, score))
        series[user] = scores
    return series, transitions


#: Same-millisecond order of a ticket's events, as the ticket metrics apply them.
TICKET_EVENT_ORDER = ("ticket_created", "ticket_replied", "ticket_solved", "ticket_reopened",
                      "ticket_closed")  # fmt: skip


def _support(
    events: list[dict[str, Any]], reply_target_ms: int, business_hours: BruteBusinessHours | None
) -> int | None:
    """The support part from a customer's ticket events, replayed ticket by ticket in event-time
    order (Zendesk semantics, as docs/metrics.md words them for the ticket metrics)."""
    tickets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] in TICKET_EVENT_ORDER:
            tickets[e["properties"].get("ticket_id") or ""].append(e)
    if not any(e["type"] != "ticket_replied" for evs in tickets.values() for e in evs):
        return None  # replies alone are no support experience
    open_now = 0
    first_replies: list[tuple[int, int]] = []  # (reply ts, first reply time) per ticket
    for evs in tickets.values():
        evs.sort(key=lambda e: (e["ts"], TICKET_EVENT_ORDER.index(e["type"])))
        # of duplicate creations in one millisecond, one not by an agent counts
        creation = min(
            (e for e in evs if e["type"] == "ticket_created"),
            key=lambda e: (e["ts"], e["properties"].get("author") == "agent"),
            default=None,
        )
        # open or not: walk the lifecycle; a creation only opens a ticket nothing ended before
        state = "unseen"
        for e in evs:
            kind = e["type"]
            if kind == "ticket_created" and state == "unseen":
                state = "open"
            elif kind == "ticket_solved" and state != "closed":
                state = "solved"
            elif kind == "ticket_reopened" and state in ("unseen", "solved"):
                state = "open"
            elif kind == "ticket_closed":
                state = "closed"
        open_now += state == "open"
        if creation is None:
            continue
        # the first public agent reply after the creation; the second for an agent's ticket
        public_agent = [
            e for e in evs
            if e["type"] == "ticket_replied"
            and e["properties"].get("author") == "agent"
            and e["properties"].get("public", True) is not False
            and (e["ts"], 1) > (creation["ts"], 0)
        ]  # fmt: skip
        nth = 2 if creation["properties"].get("author") == "agent" else 1
        if len(public_agent) >= nth:
            reply = public_agent[nth - 1]
            took = (
                reply["ts"] - creation["ts"]
                if business_hours is None
                else business_hours.business_ms(creation["ts"], reply["ts"])
            )
            first_replies.append((reply["ts"], took))
    penalty = Fraction(20 * min(open_now, 5))
    if first_replies:
        latest = max(first_replies, key=lambda r: r[0])[1]
        if latest > reply_target_ms:
            penalty += 40 * min(Fraction(latest - reply_target_ms, 2 * reply_target_ms), 1)
    return max(0, int(100 - penalty + Fraction(1, 2)))


def reference_health(
    events: list[dict[str, Any]],
    score: int,
    weights: tuple[int, int, int],  # engagement, feedback, support
    reply_target_ms: int,
    business_hours: BruteBusinessHours | None = None,
    csat_low: int = 1,
    watermark: int | None = None,
) -> int:
    """One customer's health score given their engagement score: the latest NPS (x10) or CSAT
    (on 1-5: (s-1) x 25; on 0-5: s x 20) answer; support = 100 - 20 per open ticket (at most
    5) - up to 40 as the latest first reply takes up to 3x its target, from the ticket events
    before ``watermark`` (None: all; later ones are still waiting to settle); a part without
    data is left out and the weights renormalised (round half up). With ``business_hours``, the
    reply time (and so its target) is business time."""
    answers = [
        (e["ts"], e["properties"]["score"] * 10 if e["type"] == "nps_response"
         else (e["properties"]["score"] - csat_low) * 100 // (5 - csat_low))
        for e in events
        if e["type"] in ("nps_response", "csat_response")
    ]  # fmt: skip
    feedback = max(answers)[1] if answers else None
    settled = [e for e in events if watermark is None or e["ts"] < watermark]
    support = _support(settled, reply_target_ms, business_hours)
    parts = [
        (w, v) for w, v in zip(weights, (score, feedback, support), strict=True) if v is not None
    ]
    total = sum(w for w, _ in parts)
    return int(Fraction(sum(w * v for w, v in parts), total) + Fraction(1, 2)) if total else 0
