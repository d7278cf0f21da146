"""What a metric is: its spec (name, unit, dimensions, how to compute it, how to export it) and
the query it answers. The model only; the families declare the specs
(:mod:`stream.metrics.catalog` lists them) and :mod:`stream.metrics.compute` holds the reusable
computations.

A spec is the one definition of a metric: the HTTP API and ``stream query`` evaluate it for the
windows asked for, and the Prometheus exporter evaluates the same spec for the current windows,
so the three cannot disagree. Ratios with a zero denominator are ``None`` (never 0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from stream.engine.windows import GRANULARITIES, QUERY_GRANULARITIES, Windows
from stream.metrics.reader import QueryError, Reader

__all__ = [
    "ALL_GRANULARITIES",
    "DAY_ONLY",
    "Compute",
    "Gauge",
    "MetricOptions",
    "MetricSpec",
    "Query",
    "Sums",
    "Value",
    "evaluate",
    "ratio",
]

Value = float | None
#: Every metric is read per stored window and per calendar period (the union of its days),
#: except those defined over a trailing span of days (DAU/WAU/MAU).
ALL_GRANULARITIES = QUERY_GRANULARITIES
DAY_ONLY = ("day",)


def ratio(numerator: Value, denominator: Value, scale: float = 1.0) -> Value:
    if numerator is None or not denominator:
        return None
    return numerator / denominator * scale


@dataclass(frozen=True)
class MetricOptions:
    """Deployment choices that change what a metric means (``wiring.metric_options``)."""

    tracked_pages: frozenset[str] = frozenset()
    bounce_definition: str = "ga4"  # ga4: not engaged; ua: at most one page view
    #: The stored windows (``granularities``): the exporter's, and the levels' tiling.
    granularities: tuple[str, ...] = GRANULARITIES
    #: How far past now an accepted event can be stamped (levels sum windows up to there).
    future_skew_seconds: float = 300.0
    #: Ticket times are also recorded in business hours (``support_business_hours.enabled``).
    business_hours: bool = False
    #: Sessions are kept (``sessions_enabled``).
    sessions: bool = True
    #: Customer scores are kept (``score.enabled``).
    score: bool = True
    #: Minute windows outlive the settling delay (``retention.minute`` > allowed lateness +
    #: session timeout). Otherwise facts settled on the watermark reach their minute windows
    #: after those expired, and the settled metrics have no minute series.
    settled_minutes: bool = True
    #: Share of revenue kept after the cost of sales (``gross_margin``), for predicted CLV.
    gross_margin: float = 1.0


@dataclass(frozen=True)
class Query:
    granularity: str
    starts: list[int]
    filters: dict[str, str]
    windows: Windows
    options: MetricOptions = MetricOptions()
    now: float | None = None  # wall clock for current levels (None: time.time())


Compute = Callable[[Query, Reader], Awaitable[list[Value]]]


@dataclass(frozen=True)
class Sums:
    """A formula over (filtered) sums of counter fields of one window: ``combine(*sums)``.

    Kept as data, not only as a closure, so that the exporter's per-label breakdowns (capped
    label sets, whose ``other`` series sums several labels) apply the same ``combine``.
    """

    fields: tuple[str, ...]
    combine: Callable[..., Value]


#: Which windows a gauge exports: ``current`` — the current window of each configured
#: granularity (label ``window``); ``settled`` — those plus ``previous_day``, for facts that
#: settle an allowed lateness after they happen; ``today`` — the current day, no window label;
#: ``month`` — the current calendar month (label ``window="month"``), for period figures.
GaugeWindows = Literal["current", "settled", "today", "month"]


@dataclass(frozen=True)
class Gauge:
    """How a spec is exported to Prometheus: a gauge evaluated at scrape time."""

    name: str
    help: str
    windows: GaugeWindows = "current"
    #: Prometheus takes base units: percents are exported as 0..1 ratios (scale 0.01).
    scale: float = 1.0
    #: Constant labels that tell several specs' series apart in one family (e.g. ``event``).
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    unit: str
    compute: Compute
    granularities: tuple[str, ...] = ALL_GRANULARITIES
    dimensions: tuple[str, ...] = ()
    families: tuple[str, ...] | None = ("clickstream",)  # None: every family's shards
    #: Only recorded in the business-hours mode: asking otherwise is an error, not a silent null.
    business_hours: bool = False
    #: Only recorded while sessions are kept: the same.
    sessions: bool = False
    #: Recorded when the partition's watermark passes the facts (keyed state: sessions, tickets,
    #: customers), an allowed lateness after their events: per minute only while minute windows
    #: live that long (``MetricOptions.settled_minutes``).
    settled: bool = False
    #: The formula, when the metric is one over counter sums (see :class:`Sums`).
    sums: Sums | None = None
    #: Its Prometheus gauge, if it has one (label breakdowns are the family's export code).
    gauge: Gauge | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def unavailable(self, options: MetricOptions) -> str | None:
        """Why this deployment does not record the metric, or None."""
        if self.business_hours and not options.business_hours:
            return (
                f"{self.name} is recorded only in the business-hours mode "
                "(support_business_hours.enabled, docs/configuration.md)"
            )
        if self.sessions and not options.sessions:
            return (
                f"{self.name} is a session metric and sessions are off in this deployment "
                "(sessions_enabled, docs/configuration.md)"
            )
        return None

    def unavailable_per(self, granularity: str, options: MetricOptions) -> str | None:
        """Why this deployment has no series of the metric at ``granularity``, or None."""
        if granularity == "minute" and self.settled and not options.settled_minutes:
            return (
                f"{self.name} is settled on the watermark, an allowed lateness after its "
                "events, when its minute windows have already expired (retention.minute is "
                "not above allowed_lateness_seconds + session_timeout_seconds, "
                "docs/metrics.md#retention): ask per hour or day"
            )
        return None


async def evaluate(spec: MetricSpec, query: Query, reader: Reader) -> list[Value]:
    if query.granularity not in spec.granularities:
        raise QueryError(f"{spec.name} is available per {', '.join(spec.granularities)} only")
    why = spec.unavailable(query.options) or spec.unavailable_per(query.granularity, query.options)
    if why is not None:
        raise QueryError(why)
    unknown = sorted(set(query.filters) - set(spec.dimensions))
    if unknown:
        raise QueryError(f"{spec.name} has no dimension(s) {unknown}; has {list(spec.dimensions)}")
    return await spec.compute(query, reader)
