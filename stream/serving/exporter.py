"""Business gauges for Prometheus, read from Redis at scrape time.

The truth lives in Redis, so every worker exports the same global view of the *current* windows
(wall clock, in the deployment's time zone) — scraping N workers gives N identical copies, never
a partial or double count (aggregate with ``max`` in PromQL). Ratios are exported as 0..1
``_ratio`` gauges (Prometheus base units); the HTTP API gives the percent forms.

Label hygiene: only bounded label sets. Campaign/placement/feature values are capped at
``max_label_values`` per metric: the largest series are kept and the rest fold into ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.engine.fold import ACTIVE_SET, EVENT_FIELD_PREFIX
from stream.engine.keys import FIELD_SEP
from stream.engine.windows import Windows
from stream.metrics import customer_reader, sessions
from stream.metrics.catalog import (
    SESSION_VALUES,
    MetricOptions,
    ratio,
    session_measures,
    split_field,
)
from stream.metrics.reader import Reader
from stream.serving.family_gauges import FamilyGauges

OTHER = sessions.OTHER
DURATION_FAMILY = "engagement_session_duration_seconds"
DURATION_BUCKETS = (1, 10, 30, 60, 180, 600, 1800, 3600, 7200, 14400, 43200, 86400)
#: (catalog name, Prometheus name, help, scale): percents become 0..1 ratios in Prometheus.
SESSION_GAUGES = (
    ("sessions", "engagement_sessions", "Closed sessions, by window of their first event.", 1.0),
    (
        "session_duration_avg",
        "engagement_session_duration_avg_seconds",
        "Mean duration of closed sessions.",
        1.0,
    ),
    (
        "engagement_rate",
        "engagement_session_engagement_ratio",
        "Engaged sessions / sessions (GA4).",
        0.01,
    ),
    (
        "bounce_rate",
        "engagement_session_bounce_ratio",
        "Bounced sessions / sessions (configured definition).",
        0.01,
    ),
    (
        "session_conversion_rate",
        "engagement_session_conversion_ratio",
        "Sessions with a conversion / sessions.",
        0.01,
    ),
    (
        "pages_per_session",
        "engagement_pages_per_session",
        "Page and screen views per session.",
        1.0,
    ),
)


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def cap_labels(values: dict[tuple[str, ...], float], limit: int) -> dict[tuple[str, ...], float]:
    """Keep the ``limit`` largest series; fold the rest into one ``other`` series."""
    if len(values) <= limit:
        return values
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    width = len(ranked[0][0])
    other = (OTHER,) * width
    # A real value may itself be spelled "other": add to it instead of overwriting it.
    kept[other] = kept.get(other, 0.0) + sum(v for _, v in ranked[limit - 1 :])
    return kept


def _prefixed(fields: dict[str, int], prefix: str) -> dict[tuple[str, ...], float]:
    head = prefix + FIELD_SEP
    out: dict[tuple[str, ...], float] = {}
    for name, value in fields.items():
        if name.startswith(head):
            key = tuple(split_field(name)[1:])
            out[key] = out.get(key, 0.0) + value
    return out


class BusinessExporter:
    def __init__(
        self,
        reader: Reader,
        windows: Windows,
        granularities: Iterable[str],
        max_label_values: int,
        options: MetricOptions | None = None,
    ) -> None:
        self.reader = reader
        self.windows = windows
        self.granularities = tuple(granularities)
        self.limit = max_label_values
        self.options = options or MetricOptions()

    async def families(self, now: float | None = None) -> list[Metric]:
        now = time.time() if now is None else now
        r = self.reader
        all_shards = await r.shards()
        click_shards = [s for s in all_shards if s.startswith("clickstream.")]
        fams: dict[str, GaugeMetricFamily] = {}

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            fam = fams.get(name)
            if fam is None:
                fam = fams[name] = GaugeMetricFamily(name, doc, labels=labels)
            return fam

        day_counters: dict[str, int] = {}
        for g in self.granularities:
            start = self.windows.start_of(g, now)
            (fields,) = await r.counters(all_shards, g, [start])
            if g == "day":
                day_counters = fields
            (active,) = await r.distinct(all_shards, g, [[start]], [ACTIVE_SET])
            gauge(
                "engagement_active_users",
                "Distinct active users in the current window (HLL).",
                ["window"],
            ).add_metric([g], active)
            gauge(
                "engagement_page_views",
                "page_view + screen_view events, current window.",
                ["window"],
            ).add_metric([g], fields.get("pv", 0))
            pages = gauge(
                "engagement_page_views_by_page", "Page views of tracked pages.", ["window", "page"]
            )
            for (page,), v in cap_labels(_prefixed(fields, "pv"), self.limit).items():
                pages.add_metric([g, page], v)
            gauge(
                "engagement_conversions", "Conversion events, current window.", ["window"]
            ).add_metric([g], fields.get("conv", 0))
            events = gauge(
                "engagement_events", "Accepted events by type, current window.", ["window", "type"]
            )
            for name, v in fields.items():
                if name.startswith(EVENT_FIELD_PREFIX):
                    events.add_metric([g, name[len(EVENT_FIELD_PREFIX) :]], v)
            imps = _prefixed(fields, "imp")
            clicks = _prefixed(fields, "clk")
            combos = {k: imps.get(k, 0.0) + clicks.get(k, 0.0) for k in imps.keys() | clicks.keys()}
            keep = set(cap_labels(combos, self.limit))
            folded_imps: dict[tuple[str, ...], float] = {}
            folded_clicks: dict[tuple[str, ...], float] = {}
            for k in combos:
                target = k if k in keep else (OTHER, OTHER)
                folded_imps[target] = folded_imps.get(target, 0.0) + imps.get(k, 0.0)
                folded_clicks[target] = folded_clicks.get(target, 0.0) + clicks.get(k, 0.0)
            labels = ["window", "campaign", "placement"]
            g_imp = gauge("engagement_impressions", "Impressions, current window.", labels)
            g_clk = gauge("engagement_clicks", "Clicks (orphans included), current window.", labels)
            g_ctr = gauge("engagement_ctr_ratio", "Clicks / impressions, current window.", labels)
            for k in folded_imps.keys() | folded_clicks.keys():
                g_imp.add_metric([g, *k], folded_imps.get(k, 0.0))
                g_clk.add_metric([g, *k], folded_clicks.get(k, 0.0))
                value = ratio(folded_clicks.get(k, 0.0), folded_imps.get(k, 0.0))
                if value is not None:
                    g_ctr.add_metric([g, *k], value)
            feats = gauge(
                "engagement_feature_events",
                "feature_used events, current window.",
                ["window", "feature"],
            )
            for (feature,), v in cap_labels(_prefixed(fields, "feat"), self.limit).items():
                feats.add_metric([g, feature], v)

        day = self.windows.start_of("day", now)
        dau, wau, mau = await r.distinct(
            all_shards,
            "day",
            [[day], self.windows.previous_days(day, 7), self.windows.previous_days(day, 30)],
            [ACTIVE_SET],
        )
        gauge("engagement_dau", "Daily active users, current day (HLL).", []).add_metric([], dau)
        gauge("engagement_wau", "Active users, 7 days to today (HLL).", []).add_metric([], wau)
        gauge("engagement_mau", "Active users, 30 days to today (HLL).", []).add_metric([], mau)
        stickiness = ratio(float(dau), float(mau))
        if stickiness is not None:
            gauge("engagement_stickiness_ratio", "DAU / MAU, current day.", []).add_metric(
                [], stickiness
            )
        orphans = gauge(
            "engagement_orphan_clicks",
            "Clicks without an impression, current day.",
            ["campaign", "placement"],
        )
        for k, v in cap_labels(_prefixed(day_counters, "orph"), self.limit).items():
            orphans.add_metric(list(k), v)
        feature_names = sorted(k for k in day_counters if k.startswith("feat" + FIELD_SEP))
        users = {}
        for name in feature_names:
            (users[name],) = await r.distinct(click_shards, "day", [[day]], [name])
        g_fu = gauge(
            "engagement_feature_users", "Distinct users of a feature, current day.", ["feature"]
        )
        g_fa = gauge(
            "engagement_feature_adoption_ratio",
            "Feature users / active users, current day.",
            ["feature"],
        )
        capped = cap_labels({(split_field(n)[1],): float(v) for n, v in users.items()}, self.limit)
        if len(users) > self.limit:
            # Distinct users do not add up: the folded features' series is their union.
            kept = {f for (f,) in capped if f != OTHER}
            folded = [n for n in feature_names if split_field(n)[1] not in kept]
            (union,) = await r.distinct(click_shards, "day", [[day]], folded)
            capped[(OTHER,)] = float(union)
        for (feature,), v in capped.items():
            g_fu.add_metric([feature], v)
            adoption = ratio(v, float(dau))
            if adoption is not None and feature != OTHER:
                g_fa.add_metric([feature], adoption)
        session_windows = [(g, self.windows.start_of(g, now)) for g in self.granularities]
        session_windows.append(("previous_day", self.windows.previous_days(day, 2)[-1]))
        for label, start in session_windows if self.options.sessions else ():
            g = "day" if label == "previous_day" else label
            (fields,) = await r.counters(click_shards, g, [start])
            (durations,) = await r.hashes(click_shards, g, [start], sessions.DURATION_HASH)
            self._sessions(gauge, fams, label, fields, durations)
        spans = [(label, "day" if label == "previous_day" else label, start)
                 for label, start in session_windows]  # fmt: skip
        await FamilyGauges(r, self.windows, self.options, self.limit, cap_labels).collect(
            gauge, fams, spans, now
        )
        if not self.options.score:
            return list(fams.values())
        return [*fams.values(), *await customer_reader.gauge_families(r)]

    def _sessions(
        self,
        gauge: Callable[[str, str, list[str]], GaugeMetricFamily],
        fams: dict[str, Any],
        window: str,
        fields: dict[str, int],
        durations: dict[str, int],
    ) -> None:
        """Closed sessions of one window. They close an allowed lateness after their last event,
        so with the 24 h default the ``previous_day`` window is the one that fills up."""
        m = session_measures(fields)
        for name, prometheus_name, doc, scale in SESSION_GAUGES:
            value = SESSION_VALUES[name](m, self.options)
            if value is not None:
                gauge(prometheus_name, doc, ["window"]).add_metric([window], value * scale)
        for dim in sessions.DIMENSIONS:
            per: dict[tuple[str, ...], float] = {
                (split_field(k)[2],): float(v)
                for k, v in fields.items()
                if k.startswith("ses.n" + FIELD_SEP + dim + FIELD_SEP)
            }
            by_dim = gauge(
                f"engagement_sessions_by_{dim}", f"Closed sessions by {dim}.", ["window", dim]
            )
            for (label,), n in cap_labels(per, self.limit).items():
                by_dim.add_metric([window, label], n)
        hist = fams.get(DURATION_FAMILY)
        if hist is None:
            hist = fams[DURATION_FAMILY] = GaugeHistogramMetricFamily(
                DURATION_FAMILY,
                "Durations of closed sessions in the window (whole seconds).",
                labels=["window"],
            )
        counts: dict[int, int] = {}
        head = "all" + FIELD_SEP
        for k, v in durations.items():
            if k.startswith(head):
                counts[int(k[len(head) :])] = v
        buckets = []
        for bound in DURATION_BUCKETS:
            buckets.append(
                (str(float(bound)), float(sum(n for s, n in counts.items() if s <= bound)))
            )
        buckets.append(("+Inf", float(sum(counts.values()))))
        hist.add_metric([window], buckets, gsum_value=m["ms"] / 1000)

    async def render(self, worker_registry: CollectorRegistry) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Static(await self.families()))
        return generate_latest(worker_registry) + generate_latest(registry)
