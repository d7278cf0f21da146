"""Batch reference for the support, feedback, social and account families. Plain Python.

Shares no code with the stream path: ticket lifecycles are replayed here from each ticket's
sorted event list (business-hours times counted minute by minute, tests/support/
business_reference.py), levels (followers, customers) are counted from the events before an instant,
and windows are cut with ``datetime`` (``window_start``). Only facts the stream can have
settled count: those before their partition's final watermark (max event time − lateness).
Ticket-time medians are over the documented duration buckets (tests/support/bucket_reference.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from tests.support.bucket_reference import bucketed_median
from tests.support.business_reference import BruteBusinessHours

NOT_SET = "(not set)"
TICKET_ORDER = {
    "ticket_created": 0,
    "ticket_replied": 1,
    "ticket_solved": 2,
    "ticket_reopened": 3,
    "ticket_closed": 4,
}
SOCIAL_ACTIONS = {
    "post_impression": "post_impressions",
    "like": "likes",
    "comment": "comments",
    "share": "shares",
    "save": "saves",
    "mention": "mentions",
    "follow": "follows",
    "unfollow": "unfollows",
}
ACCOUNT_COUNTS = {
    "subscription_started": "subscriptions_started",
    "subscription_renewed": "subscriptions_renewed",
    "subscription_upgraded": "subscriptions_upgraded",
    "subscription_cancelled": "subscriptions_cancelled",
    "purchase": "purchases",
}
REVENUE_TYPES = {
    "purchase",
    "subscription_started",
    "subscription_renewed",
    "subscription_upgraded",
}
TIME_METRICS = {
    "first_reply_time": "frt",
    "first_resolution_time": "fres",
    "full_resolution_time": "full",
}


def bounded(value: Any, allowed: frozenset[str]) -> str:
    return NOT_SET if value is None else value if value in allowed else "other"


@dataclass(frozen=True)
class TicketFact:
    measure: str  # new | solved | reopens | frt | fres | full (| frt_bh | fres_bh | full_bh)
    ts: int
    channel: str
    priority: str
    duration_ms: int | None = None


def replay_ticket(
    events: list[dict[str, Any]], watermark: int, channels: frozenset[str],
    priorities: frozenset[str], business: Callable[[int, int], int] | None = None,
) -> tuple[list[TicketFact], tuple[str, str] | None]:  # fmt: skip
    """Facts of one ticket's settled events, and its backlog labels over all events (or None).

    With ``business`` (ms of business hours in [start, end)), every time is also a ``*_bh``
    fact measured by it.

    Order: event time, then created, replied, solved, reopened, closed; duplicate creations in
    the same millisecond by their percent-encoded (channel, priority) labels, then not by an agent
    first — never by arrival order, which the stream cannot know.
    """

    def order(e: dict[str, Any]) -> tuple[int, int, str, str, bool]:
        props = e.get("properties", {})
        if e["type"] != "ticket_created":
            return (e["ts"], TICKET_ORDER[e["type"]], "", "", False)
        return (
            e["ts"],
            TICKET_ORDER[e["type"]],
            quote(bounded(props.get("channel"), channels), safe=""),
            quote(bounded(props.get("priority"), priorities), safe=""),
            props.get("author") == "agent",
        )

    ordered = sorted(events, key=order)
    facts: list[TicketFact] = []

    def timed(measure: str, ts: int, labels: tuple[str, str], created: int) -> None:
        facts.append(TicketFact(measure, ts, *labels, ts - created))
        if business is not None:
            facts.append(TicketFact(measure + "_bh", ts, *labels, business(created, ts)))

    def walk(evs: list[dict[str, Any]], keep: bool) -> tuple[str, tuple[str, str]]:
        status = "unknown"
        created: int | None = None
        labels = (NOT_SET, NOT_SET)
        by_agent = False
        agent_replies = 0
        solve_times: list[int] = []
        timed_solves: list[int] = []  # solves after the creation: they have resolution times
        for e in evs:
            t, ts, props = e["type"], e["ts"], e.get("properties", {})
            if t == "ticket_created" and created is None:
                created = ts
                labels = (
                    bounded(props.get("channel"), channels),
                    bounded(props.get("priority"), priorities),
                )
                by_agent = props.get("author") == "agent"
                status = "open" if status == "unknown" else status
                if keep:
                    facts.append(TicketFact("new", ts, *labels))
            elif t == "ticket_replied" and created is not None:
                if props.get("author") == "agent" and props.get("public") is not False:
                    agent_replies += 1
                    if agent_replies == (2 if by_agent else 1) and keep:
                        timed("frt", ts, labels, created)
            elif t == "ticket_solved" and status != "closed":
                if status == "solved" and keep:
                    # solved again with no reopen between: the helpdesk reopened it implicitly
                    # (a requester's reply), so a reopen, here and now
                    facts.append(TicketFact("reopens", ts, *labels))
                status = "solved"
                solve_times.append(ts)
                if keep:
                    facts.append(TicketFact("solved", ts, *labels))
                    if created is not None and len(solve_times) == 1:
                        timed("fres", ts, labels, created)
                if created is not None:
                    timed_solves.append(ts)
            elif t == "ticket_reopened" and status == "solved":
                status = "open"
                if keep:
                    facts.append(TicketFact("reopens", ts, *labels))  # counted when it happens
            elif t == "ticket_closed":
                status = "closed"
        if keep and created is not None and timed_solves:
            last = timed_solves[-1]
            timed("full", last, labels, created)
        return status, labels

    walk([e for e in ordered if e["ts"] < watermark], keep=True)
    status, labels = walk(ordered, keep=False)
    return facts, (labels if status == "open" else None)


def partition_watermarks(
    events: list[dict[str, Any]], family_of: dict[str, str], partition: Any, lateness_ms: int
) -> dict[tuple[str, int], int]:
    max_ts: dict[tuple[str, int], int] = {}
    for e in events:
        key = (family_of[e["type"]], partition(e["user_id"]))
        max_ts[key] = max(max_ts.get(key, -1), e["ts"])
    return {k: v - lateness_ms for k, v in max_ts.items()}


def customer_transitions(
    events: list[dict[str, Any]], watermark_of: Any
) -> list[tuple[int, str, str]]:
    """(ts, user, "new" | "lost") for each settled change of a customer's subscription status."""
    by_user: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        if e["type"] in ("subscription_started", "subscription_cancelled"):
            kind = 0 if e["type"] == "subscription_started" else 1
            by_user[e["user_id"]].append((e["ts"], kind))
    out = []
    for user, evs in by_user.items():
        active = False
        for ts, kind in sorted(evs):
            if ts >= watermark_of(user):
                break
            if kind == 0 and not active:
                active = True
                out.append((ts, user, "new"))
            elif kind == 1 and active:
                active = False
                out.append((ts, user, "lost"))
    return out


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _calendar_first_day(local: datetime, granularity: str, week_start: str) -> date:
    """First local date of the week (from ``week_start``), month or quarter holding ``local``."""
    today = local.date()
    if granularity == "week":
        back = (today.isoweekday() - 1 - WEEKDAYS.index(week_start)) % 7
        return today - timedelta(days=back)
    if granularity == "month":
        return date(today.year, today.month, 1)
    if granularity == "quarter":
        first_months = {1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 7, 8: 7, 9: 7}
        return date(today.year, first_months.get(today.month, 10), 1)
    raise KeyError(granularity)


def _midnight(d: date, zone: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp())


def window_end(start: int, granularity: str, zone: ZoneInfo, week_start: str = "mon") -> int:
    if granularity == "minute":
        return start + 60
    if granularity == "hour":
        return start + 3600
    first = datetime.fromtimestamp(start, zone).date()
    if granularity == "day":
        return _midnight(first + timedelta(days=1), zone)
    if granularity == "week":
        return _midnight(first + timedelta(weeks=1), zone)
    # the first day of the month/quarter after: step past its last day and floor
    later = datetime.combine(first + timedelta(days=32 if granularity == "month" else 93),
                             datetime.min.time(), zone)  # fmt: skip
    return _midnight(_calendar_first_day(later, granularity, week_start), zone)


def window_start(ts_ms: int, granularity: str, zone: ZoneInfo, week_start: str = "mon") -> int:
    """Start (epoch s) of the window holding ts_ms, cut with datetime in the zone."""
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(zone)
    if granularity == "minute":
        floored = local.replace(second=0, microsecond=0)
    elif granularity == "hour":
        floored = local.replace(minute=0, second=0, microsecond=0)
    elif granularity == "day":
        floored = datetime(local.year, local.month, local.day, tzinfo=zone)
    else:
        return _midnight(_calendar_first_day(local, granularity, week_start), zone)
    return int(floored.timestamp())


@dataclass
class FamiliesReference:
    zone: ZoneInfo
    events: list[dict[str, Any]]
    ticket_facts: list[TicketFact] = field(default_factory=list)
    backlog: list[tuple[str, str]] = field(default_factory=list)
    transitions: list[tuple[int, str, str]] = field(default_factory=list)
    touchpoints: frozenset[str] = frozenset()
    platforms: frozenset[str] = frozenset()
    week_start: str = "mon"
    _index: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, events: list[dict[str, Any]], settings: Any, family_of: dict[str, str],
        partition: Any,
    ) -> FamiliesReference:  # fmt: skip
        zone = ZoneInfo(settings.timezone)
        lateness = int(settings.allowed_lateness_seconds * 1000)
        marks = partition_watermarks(events, family_of, partition, lateness)
        ref = cls(zone, events)
        ref.week_start = settings.week_start
        ref.touchpoints = frozenset(settings.feedback_touchpoints)
        ref.platforms = frozenset(settings.social_platforms)
        hours = settings.support_business_hours
        business = None
        if hours.enabled:
            zone_name = hours.timezone or settings.timezone
            business = BruteBusinessHours.of(hours.schedule, zone_name, hours.holidays).business_ms
        tickets: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            if family_of[e["type"]] == "support":
                tickets[e["properties"]["ticket_id"]].append(e)
        for evs in tickets.values():
            wm = marks[("support", partition(evs[0]["user_id"]))]
            facts, open_labels = replay_ticket(
                evs, wm, frozenset(settings.ticket_channels),
                frozenset(settings.ticket_priorities), business,
            )  # fmt: skip
            ref.ticket_facts += facts
            if open_labels is not None:
                ref.backlog.append(open_labels)
        ref.transitions = customer_transitions(
            events, lambda user: marks.get(("account", partition(user)), -(2**62))
        )
        return ref

    # ---- values named like the catalog ----------------------------------------------------
    def _in(self, ts: int, g: str, start: int) -> bool:
        return window_start(ts, g, self.zone, self.week_start) == start

    def _events(self, g: str, start: int, types: set[str]) -> list[dict[str, Any]]:
        index = self._index.get(g)
        if index is None:  # one pass per granularity: the comparison asks for many points
            index = self._index[g] = defaultdict(list)
            for e in self.events:
                index[window_start(e["ts"], g, self.zone, self.week_start)].append(e)
        return [e for e in index.get(start, []) if e["type"] in types]

    def _ticket_slice(self, filters: dict[str, str]) -> list[TicketFact]:
        return [
            f
            for f in self.ticket_facts
            if filters.get("channel", f.channel) == f.channel
            and filters.get("priority", f.priority) == f.priority
        ]

    def value(self, metric: str, g: str, start: int, filters: dict[str, str]) -> float | None:
        if metric in ("tickets_created", "tickets_solved", "ticket_reopens"):
            measure = {"tickets_created": "new", "tickets_solved": "solved"}.get(metric, "reopens")
            return sum(
                1 for f in self._ticket_slice(filters)
                if f.measure == measure and self._in(f.ts, g, start)
            )  # fmt: skip
        for name, calendar in TIME_METRICS.items():
            if metric.startswith(name):
                measure = calendar + "_bh" if "_business_" in metric else calendar
                durations = [
                    f.duration_ms
                    for f in self._ticket_slice(filters)
                    if f.measure == measure and self._in(f.ts, g, start)
                ]
                if not durations:
                    return None
                assert all(d is not None for d in durations)
                ms = [d for d in durations if d is not None]
                if metric.endswith("_avg"):
                    return sum(ms) / len(ms) / 1000
                return bucketed_median(d // 1000 for d in ms)
        if metric == "ticket_backlog":
            return None  # a current level: checked on its own (see backlog_now)
        survey = {"nps": "nps_response", "csat": "csat_response", "ces": "ces_response"}
        for prefix, etype in survey.items():
            if metric.startswith(prefix):
                scores = [
                    e["properties"]["score"]
                    for e in self._events(g, start, {etype})
                    if filters.get("touchpoint") in (
                        None, bounded(e["properties"].get("touchpoint"), self.touchpoints)
                    )
                ]  # fmt: skip
                if metric.endswith("_responses"):
                    return len(scores)
                if not scores:
                    return None
                n = len(scores)
                if metric == "nps":
                    return (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / n * 100
                if metric == "csat":
                    return sum(s >= 4 for s in scores) / n * 100
                if metric == "ces":
                    return sum(scores) / n
                return sum(s >= 5 for s in scores) / n * 100  # ces_agree_rate
        if metric in SOCIAL_ACTIONS.values() or metric == "social_engagement_rate":
            counts: dict[str, int] = defaultdict(int)
            for e in self._events(g, start, set(SOCIAL_ACTIONS)):
                platform = bounded(e["properties"].get("platform"), self.platforms)
                if filters.get("platform", platform) == platform:
                    counts[SOCIAL_ACTIONS[e["type"]]] += 1
            if metric != "social_engagement_rate":
                return counts[metric]
            engaged = counts["likes"] + counts["comments"] + counts["shares"] + counts["saves"]
            imps = counts["post_impressions"]
            return engaged / imps * 100 if imps else None
        if metric in ("followers", "follower_growth"):
            end = window_end(start, g, self.zone, self.week_start) * 1000
            first, last = self._followers(start * 1000, filters), self._followers(end, filters)
            if metric == "followers":
                return last
            return (last - first) / first * 100 if first > 0 else None
        if metric in ACCOUNT_COUNTS.values():
            types = {t for t, m in ACCOUNT_COUNTS.items() if m == metric}
            return len(self._events(g, start, types))
        if metric == "avg_order_value":
            orders = self._events(g, start, {"purchase"})
            if not orders:
                return None
            cents = sum(round(e["properties"].get("amount", 0) * 100) for e in orders)
            return cents / 100 / len(orders)
        if metric == "revenue":
            return (
                sum(
                    round(e["properties"].get("amount", 0) * 100)
                    for e in self._events(g, start, REVENUE_TYPES)
                )
                / 100
            )
        if metric in ("new_customers", "lost_customers", "customers", "churn_rate",
                      "retention_rate", "retention_rate_classic"):  # fmt: skip
            end = window_end(start, g, self.zone, self.week_start) * 1000
            at_start = self._customers(start * 1000)
            at_end = self._customers(end)
            new = sum(1 for ts, _, k in self.transitions if k == "new" and self._in(ts, g, start))
            lost = sum(1 for ts, _, k in self.transitions if k == "lost" and self._in(ts, g, start))
            if metric == "new_customers":
                return new
            if metric == "lost_customers":
                return lost
            if metric == "customers":
                return at_end
            if not at_start:
                return None
            if metric == "retention_rate_classic":
                return (at_end - new) / at_start * 100
            # churn and retention: only the customers subscribed when the window starts
            present = self._subscribed_at(start * 1000)
            if metric == "churn_rate":
                lost_of_them = {
                    u for ts, u, k in self.transitions
                    if k == "lost" and u in present and self._in(ts, g, start)
                }  # fmt: skip
                return len(lost_of_them) / at_start * 100
            return len(present & self._subscribed_at(end)) / at_start * 100
        raise KeyError(metric)

    def _followers(self, before_ms: int, filters: dict[str, str]) -> int:
        total = 0
        for e in self.events:
            if e["type"] in ("follow", "unfollow") and e["ts"] < before_ms:
                platform = bounded(e["properties"].get("platform"), self.platforms)
                if filters.get("platform", platform) == platform:
                    total += 1 if e["type"] == "follow" else -1
        return total

    def _subscribed_at(self, before_ms: int) -> set[str]:
        """Customers whose last settled change before the instant made them subscribed."""
        last: dict[str, str] = {}
        # by time only: a stable sort keeps a start before a cancel of the same millisecond
        for ts, user, kind in sorted(self.transitions, key=lambda x: x[0]):
            if ts < before_ms:
                last[user] = kind
        return {u for u, k in last.items() if k == "new"}

    def _customers(self, before_ms: int) -> int:
        return sum(1 if k == "new" else -1 for ts, _, k in self.transitions if ts < before_ms)

    def backlog_now(self, filters: dict[str, str]) -> int:
        return sum(
            1 for channel, priority in self.backlog
            if filters.get("channel", channel) == channel
            and filters.get("priority", priority) == priority
        )  # fmt: skip

    def lifetime_value(self, user: str) -> float:
        return (
            sum(
                round(e["properties"].get("amount", 0) * 100)
                for e in self.events
                if e["user_id"] == user and e["type"] in REVENUE_TYPES
            )
            / 100
        )
