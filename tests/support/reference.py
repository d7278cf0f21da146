"""Independent batch reference: every metric computed in plain Python from the event list.

Deliberately shares no code with the stream path (no folds, deltas, keys, readers or window
helpers): windows are cut here with ``datetime`` directly, distinct counts are exact sets, and
late events are decided by replaying each partition's order. If the two disagree, one is wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka.partitioner import murmur2

PASSIVE = {"impression", "post_impression", "email_opened", "identify"}
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


def window_start(ts_ms: int, granularity: str, zone: ZoneInfo) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(zone)
    if granularity == "minute":
        floored = local.replace(second=0, microsecond=0)
    elif granularity == "hour":
        floored = local.replace(minute=0, second=0, microsecond=0)
    else:
        floored = datetime(local.year, local.month, local.day, tzinfo=zone)
    return int(floored.timestamp())


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
        part = (murmur2(e["user_id"].encode()) & 0x7FFFFFFF) % partitions
        key = (FAMILY[e["type"]], part)
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

    @classmethod
    def build(
        cls, events: Iterable[dict[str, Any]], zone: ZoneInfo, tracked_pages: frozenset[str]
    ) -> Reference:
        ref = cls(zone, tracked_pages)
        counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        users: dict[tuple[str, int, str], set[str]] = defaultdict(set)
        pairs: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for e in events:
            t, user, props = e["type"], e["user_id"], e.get("properties", {})
            for g in ("minute", "hour", "day"):
                w = (g, window_start(e["ts"], g, zone))
                c = counts[w]
                c["ev|" + t] += 1
                if t not in PASSIVE:
                    users[(*w, "active")].add(user)
                if t in ("page_view", "screen_view"):
                    c["pv"] += 1
                    if props.get("page") in tracked_pages:
                        c["pv:" + props["page"]] += 1
                elif t in ("impression", "click"):
                    camp = props.get("campaign") or NOT_SET
                    place = props.get("placement") or NOT_SET
                    c[("imp" if t == "impression" else "clk") + ":" + camp + ":" + place] += 1
                    if g == "day":
                        pairs[(w[1], user, camp, place)][0 if t == "impression" else 1] += 1
                elif t == "conversion":
                    c["conv"] += 1
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
