"""Prometheus series of the support, feedback, social and account families, read at scrape time.

Same rules as :mod:`stream.serving.exporter` (which calls this): one global view read from Redis,
the current minute/hour/day windows plus ``previous_day`` (ticket and customer facts settle an
allowed lateness after they happen, so with the 24 h default the previous day is the one that
fills up), percents as 0..1 ``_ratio`` gauges, durations as ``_seconds`` gauge histograms (mean
= ``_gsum / _gcount``, median via ``histogram_quantile``; in the business-hours mode also the
``_business_seconds`` twins of the ticket times), and only bounded labels: channel,
priority, touchpoint and platform come from configured sets and are capped at
``max_label_values`` (the rest fold into ``other``). Customers and their lifetime values never
become labels. Values come from the same pure definitions as the HTTP API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

from stream.contract.types import Family
from stream.engine.keys import FIELD_SEP, unescape
from stream.engine.windows import Windows
from stream.metrics import feedback, social, support
from stream.metrics.catalog import CATALOG, MetricOptions, Query, evaluate, ratio
from stream.metrics.reader import Reader

Gauge = Callable[[str, str, list[str]], GaugeMetricFamily]
Cap = Callable[[dict[tuple[str, ...], float], int], dict[tuple[str, ...], float]]
TIME_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400)
TICKET_TIMES = (
    ("frt", "engagement_ticket_first_reply_seconds", "Ticket created → first public agent reply."),
    ("fres", "engagement_ticket_first_resolution_seconds", "Ticket created → first solve."),
    ("full", "engagement_ticket_full_resolution_seconds", "Ticket created → latest solve."),
)
#: The same times in business hours: exported only in that mode (``support_business_hours``),
#: so a deployment without a schedule has no series that could only ever be empty.
BUSINESS_TICKET_TIMES = tuple(
    (support.BUSINESS[m], name.replace("_seconds", "_business_seconds"), doc)
    for m, name, doc in TICKET_TIMES
)
FAMILIES = tuple(f.value for f in (Family.SUPPORT, Family.FEEDBACK, Family.SOCIAL, Family.ACCOUNT))


def _by_label(fields: dict[str, int], prefix: str) -> dict[tuple[str, ...], float]:
    """``<prefix>|<label>`` counters as {(label,): value}."""
    head = prefix + FIELD_SEP
    out: dict[tuple[str, ...], float] = {}
    for name, value in fields.items():
        if name.startswith(head):
            key = (unescape(name[len(head) :]),)
            out[key] = out.get(key, 0.0) + value
    return out


class FamilyGauges:
    def __init__(
        self, reader: Reader, windows: Windows, options: MetricOptions, limit: int, cap: Cap
    ) -> None:
        self.reader = reader
        self.windows = windows
        self.options = options
        self.limit = limit
        self.cap = cap

    async def _value(self, metric: str, granularity: str, start: int, now: float) -> float | None:
        q = Query(granularity, [start], {}, self.windows, self.options, now)
        (value,) = await evaluate(CATALOG[metric], q, self.reader)
        return value

    async def collect(
        self, gauge: Gauge, fams: dict[str, Any], spans: list[tuple[str, str, int]], now: float
    ) -> None:
        """``spans``: (window label, granularity, start) of each exported window."""
        r = self.reader
        shards = await r.shards(FAMILIES)
        support_shards = [s for s in shards if s.startswith(Family.SUPPORT.value + ".")]
        for label, g, start in spans:
            (fields,) = await r.counters(shards, g, [start])
            (durations,) = await r.hashes(support_shards, g, [start], support.DURATION_HASH)
            self._support(gauge, fams, label, fields, durations)
            self._feedback(gauge, label, fields)
            self._social(gauge, label, fields)
            for name, metric, doc, scale in (
                ("engagement_customers", "customers", "Subscribed customers at window end.", 1.0),
                ("engagement_churn_ratio", "churn_rate", "Customers lost / at start.", 0.01),
                ("engagement_retention_ratio", "retention_rate", "(End − new) / start.", 0.01),
                (
                    "engagement_social_follower_growth_ratio",
                    "follower_growth",
                    "(Followers at end − at start) / at start.",
                    0.01,
                ),
            ):
                value = await self._value(metric, g, start, now)
                if value is not None:
                    gauge(name, doc, ["window"]).add_metric([label], value * scale)
            for event in ("started", "renewed", "upgraded", "cancelled"):
                gauge(
                    "engagement_subscription_events", "Subscription events.", ["window", "event"]
                ).add_metric([label, event], fields.get("acc." + event, 0))
            gauge("engagement_purchases", "Purchases.", ["window"]).add_metric(
                [label], fields.get("acc.purchases", 0)
            )
            gauge(
                "engagement_revenue", "Purchases and subscription payments (amount).", ["window"]
            ).add_metric([label], fields.get("acc.revenue", 0) / 100)
        totals = await r.totals(support_shards, support.BACKLOG)
        gauge("engagement_ticket_backlog", "Tickets open now.", []).add_metric(
            [], totals.get("all", 0)
        )
        for dim in support.DIMENSIONS:
            per = gauge(f"engagement_ticket_backlog_by_{dim}", f"Tickets open now by {dim}.", [dim])
            for (label_value,), n in self.cap(_by_label(totals, dim), self.limit).items():
                per.add_metric([label_value], n)
        social_shards = [s for s in shards if s.startswith(Family.SOCIAL.value + ".")]
        followers = await r.totals(social_shards, social.FOLLOWERS)
        per_platform = gauge(
            "engagement_social_followers",
            "Follows − unfollows since the stream began, by platform.",
            ["platform"],
        )
        as_labels: dict[tuple[str, ...], float] = {
            (unescape(k),): float(v) for k, v in followers.items()
        }
        for (platform,), n in self.cap(as_labels, self.limit).items():
            per_platform.add_metric([platform], n)

    def _support(
        self,
        gauge: Gauge,
        fams: dict[str, Any],
        window: str,
        fields: dict[str, int],
        durations: dict[str, int],
    ) -> None:
        for measure, name, doc in (
            ("new", "engagement_tickets_created", "Tickets created (settled)."),
            ("solved", "engagement_tickets_solved", "Ticket solves (settled)."),
            ("reopens", "engagement_ticket_reopens", "Solves beyond a ticket's first."),
        ):
            gauge(name, doc, ["window"]).add_metric([window], fields.get("tix." + measure, 0))
            for dim in support.DIMENSIONS:
                per = gauge(f"{name}_by_{dim}", f"{doc[:-1]} by {dim}.", ["window", dim])
                values = _by_label(fields, f"tix.{measure}{FIELD_SEP}{dim}")
                for (label_value,), n in self.cap(values, self.limit).items():
                    per.add_metric([window, label_value], n)
        times = [(*t, "calendar") for t in TICKET_TIMES]
        if self.options.business_hours:
            times += [(*t, "business") for t in BUSINESS_TICKET_TIMES]
        for measure, name, doc, hours in times:
            hist = fams.get(name)
            if hist is None:
                hist = fams[name] = GaugeHistogramMetricFamily(
                    name, f"{doc} Whole seconds, {hours} hours.", labels=["window"]
                )
            assert isinstance(hist, GaugeHistogramMetricFamily)
            head = measure + FIELD_SEP + "all" + FIELD_SEP
            counts = {int(k[len(head) :]): v for k, v in durations.items() if k.startswith(head)}
            buckets = [
                (str(float(b)), float(sum(n for s, n in counts.items() if s <= b)))
                for b in TIME_BUCKETS
            ]
            buckets.append(("+Inf", float(sum(counts.values()))))
            total_s = fields.get(f"tix.{measure}.ms", 0) / 1000
            hist.add_metric([window], buckets, gsum_value=total_s)

    def _feedback(self, gauge: Gauge, window: str, fields: dict[str, int]) -> None:
        sums = {
            name: _by_label(fields, name)
            for name in ("nps.n", "nps.pro", "nps.det", "csat.n", "csat.top", "ces.n", "ces.sum")
        }
        sums["ces.hi"] = _by_label(fields, "ces.hi")
        touchpoints = set().union(*(v.keys() for v in sums.values()))

        def total(name: str, keys: set[tuple[str, ...]]) -> float:
            return sum(sums[name].get(k, 0.0) for k in keys)

        responses = gauge(
            "engagement_survey_responses", "Survey answers.", ["window", "survey", "touchpoint"]
        )
        kept = self.cap({k: total("nps.n", {k}) + total("csat.n", {k}) + total("ces.n", {k})
                         for k in touchpoints}, self.limit)  # fmt: skip
        groups: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        for k in touchpoints:
            groups.setdefault(k if k in kept else ("other",), set()).add(k)
        slices: list[tuple[list[str], str, set[tuple[str, ...]]]] = [([window], "", touchpoints)]
        for (tp,), keys in groups.items():
            slices.append(([window, tp], "_by_touchpoint", keys))
            for survey in ("nps", "csat", "ces"):
                responses.add_metric([window, survey, tp], total(survey + ".n", keys))
        for labels, suffix, keys in slices:
            names = ["window"] if not suffix else ["window", "touchpoint"]
            for name, doc, value in (
                (
                    "engagement_nps",
                    "Net Promoter Score (−100..100).",
                    feedback.nps(
                        int(total("nps.n", keys)),
                        int(total("nps.pro", keys)),
                        int(total("nps.det", keys)),
                    ),
                ),
                (
                    "engagement_csat_ratio",
                    "CSAT: answers 4–5 / answers.",
                    ratio(total("csat.top", keys), total("csat.n", keys)),
                ),
                (
                    "engagement_ces_score",
                    "Mean CES answer (1–7).",
                    ratio(total("ces.sum", keys), total("ces.n", keys)),
                ),
                (
                    "engagement_ces_agree_ratio",
                    "CES answers 5–7 / answers.",
                    ratio(total("ces.hi", keys), total("ces.n", keys)),
                ),
            ):
                if value is not None:
                    gauge(name + suffix, doc, names).add_metric(labels, value)

    def _social(self, gauge: Gauge, window: str, fields: dict[str, int]) -> None:
        actions = {a: _by_label(fields, "soc." + a) for a in social.ACTION_NAMES}
        per = gauge(
            "engagement_social_actions",
            "Social actions by platform.",
            ["window", "platform", "action"],
        )
        platforms = set().union(*(v.keys() for v in actions.values()))
        kept = self.cap({p: actions["imp"].get(p, 0.0) for p in platforms}, self.limit)
        folded: dict[str, dict[tuple[str, ...], float]] = {a: {} for a in actions}
        for p in platforms:
            target = p if p in kept else ("other",)
            for a, values in actions.items():
                folded[a][target] = folded[a].get(target, 0.0) + values.get(p, 0.0)
        rate = gauge(
            "engagement_social_engagement_ratio",
            "(Likes + comments + shares + saves) / post impressions.",
            ["window", "platform"],
        )
        for p in {k for v in folded.values() for k in v}:
            for a in actions:
                per.add_metric([window, p[0], a], folded[a].get(p, 0.0))
            engaged = sum(folded[a].get(p, 0.0) for a in social.ENGAGEMENTS)
            value = ratio(engaged, folded["imp"].get(p, 0.0))
            if value is not None:
                rate.add_metric([window, p[0]], value)
