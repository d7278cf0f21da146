"""Independent batch reference: every metric computed in plain Python from the event list.

Deliberately shares no code with the stream path (no folds, deltas, keys, readers or window
helpers): windows are cut here with ``datetime`` directly, distinct counts are exact sets, and
late events are decided by replaying each partition's order. If the two disagree, one is wrong.
Duration medians are over the documented duration buckets (tests/support/bucket_reference.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka.partitioner import murmur2

from stream.config.settings import Settings
from tests.support.bucket_reference import bucketed_median
from tests.support.families_reference import FamiliesReference, window_start

#: Stored windows and calendar periods, each cut on its own here (never a union of days).
GRANULARITIES = ("minute", "hour", "day", "week", "month", "quarter")
CUSTOMER_VALUE_METRICS = {"purchase_frequency", "repeat_purchase_rate", "arpu", "predicted_clv"}
SESSION_METRICS = {
    "sessions",
    "session_duration_avg",
    "session_duration_median",
    "engagement_rate",
    "bounce_rate",
    "session_conversion_rate",
    "pages_per_session",
}
#: metric-definitions.md, "active user": only what the user did themselves. Served or observed
#: events, and what agents, bots and billing did on the user's behalf, do not count.
NOT_DONE_BY_THE_USER = {
    "impression",
    "post_impression",
    "email_opened",
    "identify",
    "ticket_solved",
    "ticket_closed",
    "subscription_renewed",
}


def done_by_the_user(e: dict[str, Any]) -> bool:
    """Whether the event makes its user active (the support family names its author)."""
    if e["type"] in NOT_DONE_BY_THE_USER:
        return False
    author = (e.get("properties") or {}).get("author")
    return not (e["type"].startswith("ticket_") and author in ("agent", "bot"))


CLICKSTREAM_TYPES = {
    "page_view",
    "screen_view",
    "impression",
    "click",
    "conversion",
    "feature_used",
}
FAMILY = {
    **{t: "clickstream" for t in CLICKSTREAM_TYPES},
    **{
        t: "social"
        for t in (
            "post_impression",
            "like",
            "comment",
            "share",
            "save",
            "mention",
            "follow",
            "unfollow",
        )
    },
    **{
        t: "support"
        for t in (
            "ticket_created",
            "ticket_replied",
            "ticket_solved",
            "ticket_reopened",
            "ticket_closed",
        )
    },
    **{t: "feedback" for t in ("nps_response", "csat_response", "ces_response")},
    **{
        t: "account"
        for t in (
            "subscription_started",
            "subscription_renewed",
            "subscription_upgraded",
            "subscription_cancelled",
            "purchase",
            "email_opened",
        )
    },
}
NOT_SET = "(not set)"
SESSION_TYPES = {"page_view", "screen_view", "click", "conversion", "feature_used"}


def partition_of(user_id: str, partitions: int) -> int:
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class RefSession:
    first: int
    last: int
    page_views: int
    converted: bool
    platform: str
    channel: str


def sessionize(
    events: Iterable[dict[str, Any]],
    *,
    timeout_ms: int,
    cap_ms: int,
    partitions: int,
    lateness_ms: int,
    platforms: frozenset[str],
    channels: frozenset[str],
) -> list[RefSession]:
    """Plain batch sessionizer over the whole (on-time) event list.

    Per (user, session id): sort by time, cut where the gap is ≥ timeout or the event is ≥ cap
    after the session's first event. Only sessions the stream can have closed count: those
    whose min(last + timeout, first + cap) is at or before their partition's final watermark.
    """

    def label(value: Any, allowed: frozenset[str]) -> str:
        return NOT_SET if value is None else value if value in allowed else "other"

    by_key: dict[tuple[str, str], list[tuple[int, str, str, str]]] = defaultdict(list)
    max_ts: dict[int, int] = {}
    for e in events:
        if FAMILY[e["type"]] != "clickstream":
            continue
        part = partition_of(e["user_id"], partitions)
        max_ts[part] = max(max_ts.get(part, -1), e["ts"])
        if e["type"] in SESSION_TYPES:
            props = e.get("properties", {})
            by_key[(e["user_id"], e.get("session_id") or "")].append(
                (
                    e["ts"],
                    label(props.get("platform"), platforms),
                    label(props.get("channel"), channels),
                    e["type"],
                )
            )
    out = []
    for (user, _sid), hits in by_key.items():
        hits.sort()
        watermark = max_ts[partition_of(user, partitions)] - lateness_ms
        runs: list[list[tuple[int, str, str, str]]] = []
        for hit in hits:
            if runs and hit[0] - runs[-1][-1][0] < timeout_ms and hit[0] - runs[-1][0][0] < cap_ms:
                runs[-1].append(hit)
            else:
                runs.append([hit])
        for run in runs:
            first, last = run[0][0], run[-1][0]
            if min(last + timeout_ms, first + cap_ms) > watermark:
                continue  # still open
            out.append(
                RefSession(
                    first,
                    last,
                    sum(1 for h in run if h[3] in ("page_view", "screen_view")),
                    any(h[3] == "conversion" for h in run),
                    run[0][1],
                    run[0][2],
                )
            )
    return out


def day_starts_back(day_start: int, count: int, zone: ZoneInfo) -> list[int]:
    local = datetime.fromtimestamp(day_start, zone).date()
    out = []
    for back in range(count):
        d = local - timedelta(days=back)
        out.append(int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()))
    return out


def drop_late(
    events: list[dict[str, Any]], partitions: int, lateness_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split events (in publish order) into on-time and late, per (family, partition) order."""
    max_ts: dict[tuple[str, int], int] = {}
    kept, late = [], []
    for e in events:
        key = (FAMILY[e["type"]], partition_of(e["user_id"], partitions))
        current = max_ts.get(key, -1)
        if e["ts"] > current:
            max_ts[key] = e["ts"]
        elif e["ts"] < current - lateness_ms:
            late.append(e)
            continue
        kept.append(e)
    return kept, late


@dataclass
class Reference:
    zone: ZoneInfo
    tracked_pages: frozenset[str]
    counts: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    users: dict[tuple[str, int, str], set[str]] = field(default_factory=dict)
    orphans: dict[int, dict[tuple[str, str], int]] = field(default_factory=dict)
    #: How a set of users becomes a number. ``len`` gives the exact count; the comparison swaps in
    #: an HLL oracle so approximate metrics can be checked for exact equality (see compare.py).
    distinct: Callable[[set[str]], float] = len
    sessions: list[RefSession] = field(default_factory=list)
    engaged_after_ms: int = 10_000
    bounce_definition: str = "ga4"
    _session_index: dict[str, dict[int, list[RefSession]]] = field(default_factory=dict)
    families: FamiliesReference | None = None
    week_start: str = "mon"
    gross_margin: float = 1.0

    @classmethod
    def build(cls, events: list[dict[str, Any]], settings: Settings) -> Reference:
        """Every metric from on-time events (publish order), as configured in ``settings``."""
        zone = ZoneInfo(settings.timezone)
        ref = cls(zone, frozenset(settings.tracked_pages))
        ref.week_start = settings.week_start
        ref.gross_margin = settings.gross_margin
        ref.engaged_after_ms = int(settings.engaged_session_seconds * 1000)
        ref.bounce_definition = settings.bounce_definition
        ref.sessions = sessionize(
            events,
            timeout_ms=int(settings.session_timeout_seconds * 1000),
            cap_ms=int(settings.session_cap_seconds * 1000),
            partitions=settings.topic_partitions,
            lateness_ms=int(settings.allowed_lateness_seconds * 1000),
            platforms=frozenset(settings.session_platforms),
            channels=frozenset(settings.session_channels),
        )
        counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        users: dict[tuple[str, int, str], set[str]] = defaultdict(set)
        pairs: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for e in events:
            t, user, props = e["type"], e["user_id"], e.get("properties", {})
            for g in GRANULARITIES:
                w = (g, window_start(e["ts"], g, zone, ref.week_start))
                c = counts[w]
                c["ev|" + t] += 1
                if done_by_the_user(e):
                    users[(*w, "active")].add(user)
                if t in ("page_view", "screen_view"):
                    c["pv"] += 1
                    if props.get("page") in ref.tracked_pages:
                        c["pv:" + props["page"]] += 1
                elif t in ("impression", "click"):
                    camp = props.get("campaign") or NOT_SET
                    place = props.get("placement") or NOT_SET
                    c[("imp" if t == "impression" else "clk") + ":" + camp + ":" + place] += 1
                    if g == "day":
                        pairs[(w[1], user, camp, place)][0 if t == "impression" else 1] += 1
                elif t == "conversion":
                    c["conv"] += 1
                    users[(*w, "converted")].add(user)
                elif t == "feature_used":
                    feature = props.get("feature") or NOT_SET
                    c["feat:" + feature] += 1
                    users[(*w, "feat:" + feature)].add(user)
        for (day, _user, camp, place), (imps, clicks) in pairs.items():
            if imps == 0 and clicks:
                bucket = ref.orphans.setdefault(day, {})
                bucket[(camp, place)] = bucket.get((camp, place), 0) + clicks
        ref.counts = {k: dict(v) for k, v in counts.items()}
        ref.users = dict(users)
        ref.families = FamiliesReference.build(
            events, settings, FAMILY, lambda user: partition_of(user, settings.topic_partitions)
        )
        return ref

    # ---- metric values, named like the catalog --------------------------------------------
    def _c(self, g: str, start: int) -> dict[str, int]:
        return self.counts.get((g, start), {})

    def _sum(self, g: str, start: int, prefix: str, filters: dict[str, str]) -> int:
        total = 0
        for name, v in self._c(g, start).items():
            parts = name.split(":")
            if parts[0] != prefix:
                continue
            dims = dict(zip(("campaign", "placement"), parts[1:], strict=False))
            if prefix == "feat":
                dims = {"feature": ":".join(parts[1:])}
            if all(dims.get(k) == v2 for k, v2 in filters.items()):
                total += v
        return total

    def _active(self, g: str, starts: list[int]) -> float:
        members = (self.users.get((g, s, "active"), set()) for s in starts)
        return self.distinct(set().union(*members))

    def value(self, metric: str, g: str, start: int, filters: dict[str, str]) -> float | None:
        c = self._c(g, start)
        if metric == "events":
            if "type" in filters:
                return c.get("ev|" + filters["type"], 0)
            return sum(v for k, v in c.items() if k.startswith("ev|"))
        if metric in ("active_users", "dau"):
            return self._active(g, [start])
        if metric == "wau":
            return self._active(g, day_starts_back(start, 7, self.zone))
        if metric == "mau":
            return self._active(g, day_starts_back(start, 30, self.zone))
        if metric == "stickiness":
            mau = self._active(g, day_starts_back(start, 30, self.zone))
            return self._active(g, [start]) / mau if mau else None
        if metric == "page_views":
            return c.get("pv:" + filters["page"], 0) if "page" in filters else c.get("pv", 0)
        if metric == "impressions":
            return self._sum(g, start, "imp", filters)
        if metric == "clicks":
            return self._sum(g, start, "clk", filters)
        if metric == "ctr":
            imps = self._sum(g, start, "imp", filters)
            return self._sum(g, start, "clk", filters) / imps * 100 if imps else None
        if metric == "orphan_clicks":
            return sum(
                v
                for (camp, place), v in self.orphans.get(start, {}).items()
                if filters.get("campaign", camp) == camp
                and filters.get("placement", place) == place
            )
        if metric == "conversions":
            return c.get("conv", 0)
        if metric == "user_conversion_rate":  # converting users / active users of the window
            active = self._active(g, [start])
            converted = self.users.get((g, start, "converted"), set())
            return self.distinct(converted) / active * 100 if active else None
        if metric == "feature_events":
            return self._sum(g, start, "feat", filters)
        if metric in ("feature_users", "feature_adoption"):
            if "feature" in filters:
                users = self.users.get((g, start, "feat:" + filters["feature"]), set())
            else:
                users = set().union(
                    *(
                        u
                        for (g2, s2, n), u in self.users.items()
                        if g2 == g and s2 == start and n.startswith("feat:")
                    )
                )
            if metric == "feature_users":
                return self.distinct(users)
            active = self._active(g, [start])
            return self.distinct(users) / active * 100 if active else None
        if metric in SESSION_METRICS:
            return self._session_value(metric, g, start, filters)
        if self.families is None:
            raise KeyError(metric)
        if metric in CUSTOMER_VALUE_METRICS:
            return self._customer_value(metric, g, start)
        return self.families.value(metric, g, start, filters)

    def _customer_value(self, metric: str, g: str, start: int) -> float | None:
        """Purchase frequency, repeat buyers, ARPU and predicted CLV from the window's own
        purchases, revenue, active users and churn."""
        assert self.families is not None
        orders = self.families._events(g, start, {"purchase"})
        per_buyer: dict[str, int] = defaultdict(int)
        for e in orders:
            per_buyer[e["user_id"]] += 1
        buyers = self.distinct(set(per_buyer))
        if metric == "purchase_frequency":
            return len(orders) / buyers if buyers else None
        if metric == "repeat_purchase_rate":
            repeat = self.distinct({u for u, n in per_buyer.items() if n >= 2})
            return repeat / buyers * 100 if buyers else None
        active = self._active(g, [start])
        revenue = self.families.value("revenue", g, start, {})
        assert revenue is not None
        arpu = revenue / active if active else None
        if metric == "arpu":
            return arpu
        churn = self.families.value("churn_rate", g, start, {})
        if arpu is None or not churn:
            return None
        return arpu * self.gross_margin / (churn / 100)

    def _session_value(
        self, metric: str, g: str, start: int, filters: dict[str, str]
    ) -> float | None:
        index = self._session_index.get(g)
        if index is None:
            index = self._session_index[g] = defaultdict(list)
            for s in self.sessions:
                index[window_start(s.first, g, self.zone, self.week_start)].append(s)
        chosen = [
            s
            for s in index.get(start, [])
            if filters.get("platform", s.platform) == s.platform
            and filters.get("channel", s.channel) == s.channel
        ]
        n = len(chosen)
        if metric == "sessions":
            return n
        if n == 0:
            return None
        engaged = [
            s.last - s.first > self.engaged_after_ms or s.converted or s.page_views >= 2
            for s in chosen
        ]
        if metric == "session_duration_avg":
            return sum(s.last - s.first for s in chosen) / n / 1000
        if metric == "session_duration_median":
            return bucketed_median((s.last - s.first) // 1000 for s in chosen)
        if metric == "engagement_rate":
            return sum(engaged) / n * 100
        if metric == "bounce_rate":
            if self.bounce_definition == "ua":
                return sum(1 for s in chosen if s.page_views <= 1) / n * 100
            return (n - sum(engaged)) / n * 100
        if metric == "session_conversion_rate":
            return sum(1 for s in chosen if s.converted) / n * 100
        if metric == "pages_per_session":
            return sum(s.page_views for s in chosen) / n
        raise KeyError(metric)

    def windows(self, g: str) -> list[int]:
        return sorted({s for (g2, s) in self.counts if g2 == g})

    def campaigns(self) -> set[tuple[str, str]]:
        out = set()
        for c in self.counts.values():
            for name in c:
                if name.startswith(("imp:", "clk:")):
                    _, camp, place = name.split(":", 2)
                    out.add((camp, place))
        return out

    def features(self) -> set[str]:
        return {
            n.split(":", 1)[1] for c in self.counts.values() for n in c if n.startswith("feat:")
        }
