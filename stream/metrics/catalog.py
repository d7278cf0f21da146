"""Every queryable metric: its definition on top of the stored windows, in one table.

Shared by the HTTP API, ``stream query`` and the Prometheus exporter, so the three can never
disagree. A metric computes one value per requested window from summed counters and merged
distinct-count sets (:mod:`stream.metrics.reader`); ratios with a zero denominator are ``None``
(never 0). Definitions follow ``metric-definitions.md``; distinct users are HyperLogLog
estimates (0.81 % standard error).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from stream.contract.types import EventType, Family
from stream.engine.fold import ACTIVE_SET, EVENT_FIELD_PREFIX
from stream.engine.keys import FIELD_SEP, escape, unescape
from stream.engine.windows import Windows
from stream.metrics import accounts, feedback, sessions, social, support
from stream.metrics.levels import levels
from stream.metrics.reader import QueryError, Reader

Value = float | None
ALL_GRANULARITIES = ("minute", "hour", "day")
DAY_ONLY = ("day",)
CLICKSTREAM = (Family.CLICKSTREAM.value,)
SUPPORT = (Family.SUPPORT.value,)
FEEDBACK = (Family.FEEDBACK.value,)
SOCIAL = (Family.SOCIAL.value,)
ACCOUNT = (Family.ACCOUNT.value,)


@dataclass(frozen=True)
class MetricOptions:
    """Deployment choices that change what a metric means (from Settings)."""

    tracked_pages: frozenset[str] = frozenset()
    bounce_definition: str = "ga4"  # ga4: not engaged; ua: at most one page view
    granularities: tuple[str, ...] = ALL_GRANULARITIES
    #: How far past now an accepted event can be stamped (levels sum windows up to there).
    future_skew_seconds: float = 300.0
    #: Ticket times are also recorded in business hours (``support_business_hours.enabled``).
    business_hours: bool = False
    #: Sessions are kept (``sessions_enabled``).
    sessions: bool = True
    #: Customer scores are kept (``score.enabled``).
    score: bool = True


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
class MetricSpec:
    name: str
    description: str
    unit: str
    compute: Compute
    granularities: tuple[str, ...] = ALL_GRANULARITIES
    dimensions: tuple[str, ...] = ()
    families: tuple[str, ...] | None = CLICKSTREAM  # None: every family's shards
    extra: dict[str, str] = field(default_factory=dict)
    #: Only recorded in the business-hours mode: asking otherwise is an error, not a silent null.
    business_hours: bool = False
    #: Only recorded while sessions are kept: the same.
    sessions: bool = False


def ratio(numerator: Value, denominator: Value, scale: float = 1.0) -> Value:
    if numerator is None or not denominator:
        return None
    return numerator / denominator * scale


def split_field(name: str) -> list[str]:
    return [unescape(p) for p in name.split(FIELD_SEP)]


def _sum_matching(fields: dict[str, int], prefix: str, dims: tuple[str, ...], q: Query) -> int:
    """Sum counter fields ``prefix|<dim1>|<dim2>…`` whose dimensions match the filters."""
    wanted = [q.filters.get(d) for d in dims]
    total = 0
    head = prefix + FIELD_SEP
    for name, value in fields.items():
        if not name.startswith(head):
            continue
        parts = split_field(name)[1:]
        if all(w is None or w == p for w, p in zip(wanted, parts, strict=False)):
            total += value
    return total


async def _counters(q: Query, r: Reader, families: tuple[str, ...]) -> list[dict[str, int]]:
    shards = await r.shards(families)
    return await r.counters(shards, q.granularity, q.starts)


def _field_sum(fields: dict[str, int], prefix: str, dims: tuple[str, ...], q: Query) -> float:
    """A counter without dimensions, or the filtered sum of one with dimensions."""
    if not dims:
        return float(fields.get(prefix, 0))
    return float(_sum_matching(fields, prefix, dims, q))


def counter_metric(
    prefix: str, dims: tuple[str, ...], families: tuple[str, ...] = CLICKSTREAM
) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        return [_field_sum(w, prefix, dims, q) for w in await _counters(q, r, families)]

    return compute


def sums_metric(
    families: tuple[str, ...],
    dims: tuple[str, ...],
    prefixes: tuple[str, ...],
    combine: Callable[..., Value],
) -> Compute:
    """A value combined from several (filtered) counter sums of one window, e.g. a ratio."""

    async def compute(q: Query, r: Reader) -> list[Value]:
        return [
            combine(*(_field_sum(w, p, dims, q) for p in prefixes))
            for w in await _counters(q, r, families)
        ]

    return compute


async def _events(q: Query, r: Reader) -> list[Value]:
    wanted = q.filters.get("type")
    if wanted is not None and wanted not in {t.value for t in EventType}:
        raise QueryError(f"unknown event type {wanted!r}")
    windows = await _counters(q, r, tuple(f.value for f in Family))
    out: list[Value] = []
    for w in windows:
        if wanted is not None:
            out.append(float(w.get(EVENT_FIELD_PREFIX + wanted, 0)))
        else:
            out.append(float(sum(v for k, v in w.items() if k.startswith(EVENT_FIELD_PREFIX))))
    return out


async def _page_views(q: Query, r: Reader) -> list[Value]:
    page = q.filters.get("page")
    windows = await _counters(q, r, CLICKSTREAM)
    if page is None:
        return [float(w.get("pv", 0)) for w in windows]
    if page not in q.options.tracked_pages:
        raise QueryError(f"page {page!r} is not tracked (see tracked_pages)")
    name = "pv" + FIELD_SEP + escape(page)
    return [float(w.get(name, 0)) for w in windows]


async def _ctr(q: Query, r: Reader) -> list[Value]:
    windows = await _counters(q, r, CLICKSTREAM)
    dims = ("campaign", "placement")
    return [
        ratio(float(_sum_matching(w, "clk", dims, q)), float(_sum_matching(w, "imp", dims, q)), 100)
        for w in windows
    ]


async def _active(q: Query, r: Reader, days: int | None) -> list[Value]:
    shards = await r.shards()
    groups = [[s] if days is None else q.windows.previous_days(s, days) for s in q.starts]
    return [float(v) for v in await r.distinct(shards, q.granularity, groups, [ACTIVE_SET])]


def active_metric(days: int | None) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        return await _active(q, r, days)

    return compute


async def _stickiness(q: Query, r: Reader) -> list[Value]:
    dau = await _active(q, r, None)
    mau = await _active(q, r, 30)
    return [ratio(d, m) for d, m in zip(dau, mau, strict=True)]


async def _feature_users(q: Query, r: Reader) -> list[Value]:
    shards = await r.shards(CLICKSTREAM)
    feature = q.filters.get("feature")
    if feature is not None:
        names = [["feat" + FIELD_SEP + escape(feature)] for _ in q.starts]
    else:  # union over every feature used in the window (names from the counters)
        windows = await r.counters(shards, q.granularity, q.starts)
        names = [[k for k in w if k.startswith("feat" + FIELD_SEP)] for w in windows]
    out: list[Value] = []
    for start, set_names in zip(q.starts, names, strict=True):
        if not set_names:
            out.append(0.0)
            continue
        (count,) = await r.distinct(shards, q.granularity, [[start]], set_names)
        out.append(float(count))
    return out


async def _feature_adoption(q: Query, r: Reader) -> list[Value]:
    users = await _feature_users(q, r)
    active = await _active(q, r, None)
    return [ratio(u, a, 100) for u, a in zip(users, active, strict=True)]


def one_dim_slice(q: Query, dimensions: tuple[str, ...]) -> tuple[str, str]:
    """(counter suffix, histogram-hash prefix) of the one dimension filter, if any.

    Facts with several dimensions (sessions, tickets) are stored once per dimension, not per
    combination, so a query may filter by one of them at a time.
    """
    dims = [d for d in dimensions if d in q.filters]
    if len(dims) > 1:
        raise QueryError(f"filter by one of {', '.join(dimensions)}, not several")
    if not dims:
        return "", "all" + FIELD_SEP
    value = escape(q.filters[dims[0]])
    return FIELD_SEP + dims[0] + FIELD_SEP + value, dims[0] + FIELD_SEP + value + FIELD_SEP


def _session_slice(q: Query) -> tuple[str, str]:
    return one_dim_slice(q, sessions.DIMENSIONS)


def session_measures(fields: dict[str, int], suffix: str = "") -> dict[str, int]:
    """The session measures of one window's counters (all sessions, or one platform/channel)."""
    return {m: fields.get("ses." + m + suffix, 0) for m in sessions.MEASURES}


async def _session_measures(q: Query, r: Reader) -> list[dict[str, int]]:
    suffix, _ = _session_slice(q)
    return [session_measures(w, suffix) for w in await _counters(q, r, CLICKSTREAM)]


def session_metric(compute_one: SessionValue) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        return [compute_one(m, q.options) for m in await _session_measures(q, r)]

    return compute


def _bounce(m: dict[str, int], options: MetricOptions) -> Value:
    bounced = m["1p"] if options.bounce_definition == "ua" else m["n"] - m["eng"]
    return ratio(float(bounced), m["n"], 100)


SessionValue = Callable[[dict[str, int], MetricOptions], Value]
#: Session metrics computed from a window's measures (shared with the Prometheus exporter).
SESSION_VALUES: dict[str, SessionValue] = {
    "sessions": lambda m, _: float(m["n"]),
    "session_duration_avg": lambda m, _: ratio(float(m["ms"]), m["n"], 0.001),
    "engagement_rate": lambda m, _: ratio(float(m["eng"]), m["n"], 100),
    "bounce_rate": _bounce,
    "session_conversion_rate": lambda m, _: ratio(float(m["conv"]), m["n"], 100),
    "pages_per_session": lambda m, _: ratio(float(m["pv"]), m["n"]),
}


def median_of_counts(counts: dict[int, int]) -> Value:
    """Median of a multiset given as value -> count (mean of the two middle values if even)."""
    total = sum(counts.values())
    if total == 0:
        return None
    lower_rank, upper_rank = (total - 1) // 2, total // 2
    seen = 0
    lower: int | None = None
    for value in sorted(counts):
        seen += counts[value]
        if lower is None and seen > lower_rank:
            lower = value
        if seen > upper_rank:
            assert lower is not None
            return (lower + value) / 2
    raise AssertionError("unreachable")


async def _hash_median(
    q: Query, r: Reader, families: tuple[str, ...], hash_name: str, prefix: str
) -> list[Value]:
    """Median of the whole-second values counted under ``prefix`` in each window's hash."""
    shards = await r.shards(families)
    out: list[Value] = []
    for hist in await r.hashes(shards, q.granularity, q.starts, hash_name):
        counts = {
            int(name[len(prefix) :]): n for name, n in hist.items() if name.startswith(prefix)
        }
        out.append(median_of_counts(counts))
    return out


async def _session_median(q: Query, r: Reader) -> list[Value]:
    _, prefix = _session_slice(q)
    return await _hash_median(q, r, CLICKSTREAM, sessions.DURATION_HASH, prefix)


# ---- support tickets ---------------------------------------------------------------------


def ticket_count(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        suffix, _ = one_dim_slice(q, support.DIMENSIONS)
        return [float(w.get("tix." + measure + suffix, 0)) for w in await _counters(q, r, SUPPORT)]

    return compute


def ticket_mean(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        suffix, _ = one_dim_slice(q, support.DIMENSIONS)
        stem = "tix." + measure
        return [
            ratio(float(w.get(stem + ".ms" + suffix, 0)), w.get(stem + ".n" + suffix, 0), 0.001)
            for w in await _counters(q, r, SUPPORT)
        ]

    return compute


def ticket_median(measure: str) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        _, prefix = one_dim_slice(q, support.DIMENSIONS)
        return await _hash_median(
            q, r, SUPPORT, support.DURATION_HASH, measure + FIELD_SEP + prefix
        )

    return compute


async def _backlog(q: Query, r: Reader) -> list[Value]:
    """Open tickets now: a current level (no history), so only the window holding now has it."""
    suffix, _ = one_dim_slice(q, support.DIMENSIONS)
    name = suffix[1:] if suffix else "all"
    now = q.now if q.now is not None else time.time()
    current = q.windows.start_of(q.granularity, now)
    if current not in q.starts:
        return [None] * len(q.starts)
    shards = await r.shards(SUPPORT)
    value = float(await r.total_field(shards, support.BACKLOG, name))
    return [value if s == current else None for s in q.starts]


# ---- levels: followers and customers -------------------------------------------------------


async def _levels(
    q: Query,
    r: Reader,
    families: tuple[str, ...],
    totals_name: str,
    total_of: Callable[[dict[str, int]], float],
    change: Callable[[dict[str, int]], float],
) -> list[tuple[float, float]]:
    shards = await r.shards(families)
    total = total_of(await r.totals(shards, totals_name))
    return await levels(
        r,
        shards,
        q.windows,
        q.options.granularities,
        q.granularity,
        q.starts,
        total,
        change,
        q.options.future_skew_seconds + 60,
    )


async def _followers(q: Query, r: Reader) -> list[tuple[float, float]]:
    platform = q.filters.get("platform")

    def total_of(fields: dict[str, int]) -> float:
        if platform is None:
            return float(sum(fields.values()))
        return float(fields.get(escape(platform), 0))

    def change(fields: dict[str, int]) -> float:
        dims = social.DIMENSIONS
        return _field_sum(fields, "soc.follow", dims, q) - _field_sum(
            fields, "soc.unfollow", dims, q
        )

    return await _levels(q, r, SOCIAL, social.FOLLOWERS, total_of, change)


async def _followers_end(q: Query, r: Reader) -> list[Value]:
    return [start + change for start, change in await _followers(q, r)]


async def _follower_growth(q: Query, r: Reader) -> list[Value]:
    return [social.growth(start, start + change) for start, change in await _followers(q, r)]


async def _customer_windows(q: Query, r: Reader) -> list[tuple[float, float, float]]:
    """(customers at start, new, lost) per window."""
    windows = await _counters(q, r, ACCOUNT)
    starts = await _levels(
        q,
        r,
        ACCOUNT,
        accounts.CUSTOMERS,
        lambda t: float(t.get("all", 0)),
        lambda w: float(w.get("acc.new", 0) - w.get("acc.lost", 0)),
    )
    return [
        (level, float(w.get("acc.new", 0)), float(w.get("acc.lost", 0)))
        for (level, _), w in zip(starts, windows, strict=True)
    ]


async def _customers_end(q: Query, r: Reader) -> list[Value]:
    return [start + new - lost for start, new, lost in await _customer_windows(q, r)]


async def _churn(q: Query, r: Reader) -> list[Value]:
    return [ratio(lost, start, 100) for start, _, lost in await _customer_windows(q, r)]


async def _retention(q: Query, r: Reader) -> list[Value]:
    return [
        ratio(start + new - lost - new, start, 100)
        for start, new, lost in await _customer_windows(q, r)
    ]


_CAMPAIGN_DIMS = ("campaign", "placement")
_SESSION_DIMS = sessions.DIMENSIONS

_TIX = support.DIMENSIONS
_TP = feedback.DIMENSIONS
_PLAT = social.DIMENSIONS
_TIME_NAMES = {
    "frt": ("first_reply_time", "ticket_created → first public agent reply"),
    "fres": ("first_resolution_time", "ticket_created → first solve"),
    "full": ("full_resolution_time", "ticket_created → latest solve"),
}


def _family_specs() -> list[MetricSpec]:
    specs = [
        MetricSpec(
            "tickets_created",
            "Tickets created (settled once the watermark passes them).",
            "count",
            ticket_count("new"),
            dimensions=_TIX,
            families=SUPPORT,
        ),
        MetricSpec(
            "tickets_solved",
            "Ticket solves (a re-solve after a reopen counts again).",
            "count",
            ticket_count("solved"),
            dimensions=_TIX,
            families=SUPPORT,
        ),
        MetricSpec(
            "ticket_reopens",
            "Solves beyond a ticket's first (reopens = solves − 1), in the re-solve's window.",
            "count",
            ticket_count("reopens"),
            dimensions=_TIX,
            families=SUPPORT,
        ),
        MetricSpec(
            "ticket_backlog",
            "Tickets open now (current value; only the window holding now has a point).",
            "count",
            _backlog,
            dimensions=_TIX,
            families=SUPPORT,
        ),
    ]
    for measure, (name, what) in _TIME_NAMES.items():
        specs.append(
            MetricSpec(
                name + "_avg",
                f"Mean {what} (calendar hours), in the window of the completing event.",
                "seconds",
                ticket_mean(measure),
                dimensions=_TIX,
                families=SUPPORT,
            )
        )
        specs.append(
            MetricSpec(
                name + "_median",
                f"Median {what}, in whole seconds.",
                "seconds",
                ticket_median(measure),
                dimensions=_TIX,
                families=SUPPORT,
            )
        )
        business = support.BUSINESS[measure]
        specs.append(
            MetricSpec(
                name + "_business_avg",
                f"Mean {what} in business hours (support_business_hours), in the window of the "
                "completing event.",
                "seconds",
                ticket_mean(business),
                dimensions=_TIX,
                families=SUPPORT,
                business_hours=True,
            )
        )
        specs.append(
            MetricSpec(
                name + "_business_median",
                f"Median {what} in business hours, in whole seconds.",
                "seconds",
                ticket_median(business),
                dimensions=_TIX,
                families=SUPPORT,
                business_hours=True,
            )
        )
    specs += [
        MetricSpec(
            "nps",
            "Net Promoter Score: % promoters (9–10) − % detractors (0–6), −100..100.",
            "score",
            sums_metric(FEEDBACK, _TP, ("nps.n", "nps.pro", "nps.det"), feedback.nps),
            dimensions=_TP,
            families=FEEDBACK,
        ),
        MetricSpec(
            "csat",
            "CSAT: answers 4–5 / answers × 100 (1–5 scale).",
            "percent",
            sums_metric(FEEDBACK, _TP, ("csat.top", "csat.n"), lambda t, n: ratio(t, n, 100)),
            dimensions=_TP,
            families=FEEDBACK,
        ),
        MetricSpec(
            "ces",
            "Customer Effort Score: mean answer (1–7 agreement scale).",
            "score",
            sums_metric(FEEDBACK, _TP, ("ces.sum", "ces.n"), ratio),
            dimensions=_TP,
            families=FEEDBACK,
        ),
        MetricSpec(
            "ces_agree_rate",
            "CES answers 5–7 / answers × 100.",
            "percent",
            sums_metric(FEEDBACK, _TP, ("ces.hi", "ces.n"), lambda h, n: ratio(h, n, 100)),
            dimensions=_TP,
            families=FEEDBACK,
        ),
    ]
    for survey in ("nps", "csat", "ces"):
        specs.append(
            MetricSpec(
                f"{survey}_responses",
                f"{survey.upper()} answers.",
                "count",
                counter_metric(f"{survey}.n", _TP, FEEDBACK),
                dimensions=_TP,
                families=FEEDBACK,
            )
        )
    for action, name in (
        ("imp", "post_impressions"),
        ("like", "likes"),
        ("comment", "comments"),
        ("share", "shares"),
        ("save", "saves"),
        ("mention", "mentions"),
        ("follow", "follows"),
        ("unfollow", "unfollows"),
    ):
        specs.append(
            MetricSpec(
                name,
                f"Social {name.replace('_', ' ')}.",
                "count",
                counter_metric("soc." + action, _PLAT, SOCIAL),
                dimensions=_PLAT,
                families=SOCIAL,
            )
        )
    engagements = tuple("soc." + a for a in social.ENGAGEMENTS)
    specs += [
        MetricSpec(
            "social_engagement_rate",
            "(likes + comments + shares + saves) / post impressions × 100.",
            "percent",
            sums_metric(
                SOCIAL, _PLAT, ("soc.imp", *engagements), lambda i, *e: ratio(sum(e), i, 100)
            ),
            dimensions=_PLAT,
            families=SOCIAL,
        ),
        MetricSpec(
            "followers",
            "Followers at the window's end: follows − unfollows stamped before it.",
            "count",
            _followers_end,
            dimensions=_PLAT,
            families=SOCIAL,
        ),
        MetricSpec(
            "follower_growth",
            "(followers at end − at start) / at start × 100 (null when start ≤ 0).",
            "percent",
            _follower_growth,
            dimensions=_PLAT,
            families=SOCIAL,
        ),
    ]
    for field_name, name in (
        ("acc.started", "subscriptions_started"),
        ("acc.renewed", "subscriptions_renewed"),
        ("acc.upgraded", "subscriptions_upgraded"),
        ("acc.cancelled", "subscriptions_cancelled"),
        ("acc.purchases", "purchases"),
        ("acc.new", "new_customers"),
        ("acc.lost", "lost_customers"),
    ):
        specs.append(
            MetricSpec(
                name,
                f"{name.replace('_', ' ').capitalize()} (customers: settled on the watermark).",
                "count",
                counter_metric(field_name, (), ACCOUNT),
                families=ACCOUNT,
            )
        )
    specs += [
        MetricSpec(
            "revenue",
            "Sum of amount over purchases and started/renewed/upgraded subscriptions.",
            "currency",
            sums_metric(ACCOUNT, (), ("acc.revenue",), lambda c: c / 100),
            families=ACCOUNT,
        ),
        MetricSpec(
            "customers",
            "Subscribed customers at the window's end.",
            "count",
            _customers_end,
            families=ACCOUNT,
        ),
        MetricSpec(
            "churn_rate",
            "Customers lost in the window / customers at its start × 100.",
            "percent",
            _churn,
            families=ACCOUNT,
        ),
        MetricSpec(
            "retention_rate",
            "(Customers at end − new customers) / customers at start × 100.",
            "percent",
            _retention,
            families=ACCOUNT,
        ),
    ]
    return specs


FAMILY_SPECS = _family_specs()

CATALOG: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "events",
            "Accepted events (any family).",
            "count",
            _events,
            dimensions=("type",),
            families=None,
        ),
        MetricSpec(
            "active_users",
            "Distinct active users in the window (HLL).",
            "users",
            active_metric(None),
            families=None,
        ),
        MetricSpec(
            "dau",
            "Daily active users (HLL).",
            "users",
            active_metric(None),
            DAY_ONLY,
            families=None,
        ),
        MetricSpec(
            "wau",
            "Active users in the 7 days ending with the day (HLL).",
            "users",
            active_metric(7),
            DAY_ONLY,
            families=None,
        ),
        MetricSpec(
            "mau",
            "Active users in the 30 days ending with the day (HLL).",
            "users",
            active_metric(30),
            DAY_ONLY,
            families=None,
        ),
        MetricSpec(
            "stickiness",
            "DAU / MAU (null when MAU is 0).",
            "ratio",
            _stickiness,
            DAY_ONLY,
            families=None,
        ),
        MetricSpec(
            "page_views",
            "page_view + screen_view events.",
            "count",
            _page_views,
            dimensions=("page",),
        ),
        MetricSpec(
            "impressions",
            "Ad/campaign impressions.",
            "count",
            counter_metric("imp", _CAMPAIGN_DIMS),
            dimensions=_CAMPAIGN_DIMS,
        ),
        MetricSpec(
            "clicks",
            "Ad/campaign clicks, orphans included.",
            "count",
            counter_metric("clk", _CAMPAIGN_DIMS),
            dimensions=_CAMPAIGN_DIMS,
        ),
        MetricSpec(
            "orphan_clicks",
            "Clicks by a user with no impression of that campaign+placement that day.",
            "count",
            counter_metric("orph", _CAMPAIGN_DIMS),
            DAY_ONLY,
            dimensions=_CAMPAIGN_DIMS,
        ),
        MetricSpec(
            "ctr",
            "Clicks / impressions × 100 (null without impressions).",
            "percent",
            _ctr,
            dimensions=_CAMPAIGN_DIMS,
        ),
        MetricSpec("conversions", "Conversion events.", "count", counter_metric("conv", ())),
        MetricSpec(
            "feature_events",
            "feature_used events.",
            "count",
            counter_metric("feat", ("feature",)),
            dimensions=("feature",),
        ),
        MetricSpec(
            "feature_users",
            "Distinct users of a feature (HLL).",
            "users",
            _feature_users,
            dimensions=("feature",),
        ),
        MetricSpec(
            "feature_adoption",
            "Feature users / active users × 100.",
            "percent",
            _feature_adoption,
            dimensions=("feature",),
        ),
        MetricSpec(
            "sessions",
            "Closed sessions, in the window of their first event.",
            "count",
            session_metric(SESSION_VALUES["sessions"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "session_duration_avg",
            "Mean session duration (last − first event; one-event sessions count 0 s).",
            "seconds",
            session_metric(SESSION_VALUES["session_duration_avg"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "session_duration_median",
            "Median session duration, in whole seconds.",
            "seconds",
            _session_median,
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "engagement_rate",
            "Engaged sessions / sessions × 100 (GA4: > 10 s, a conversion or ≥ 2 page views).",
            "percent",
            session_metric(SESSION_VALUES["engagement_rate"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "bounce_rate",
            "Bounced sessions / sessions × 100 (GA4: not engaged; UA option: ≤ 1 page view).",
            "percent",
            session_metric(SESSION_VALUES["bounce_rate"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "session_conversion_rate",
            "Sessions with ≥ 1 conversion / sessions × 100.",
            "percent",
            session_metric(SESSION_VALUES["session_conversion_rate"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        MetricSpec(
            "pages_per_session",
            "Page and screen views / sessions.",
            "ratio",
            session_metric(SESSION_VALUES["pages_per_session"]),
            dimensions=_SESSION_DIMS,
            sessions=True,
        ),
        *FAMILY_SPECS,
    )
}


async def evaluate(spec: MetricSpec, query: Query, reader: Reader) -> list[Value]:
    if query.granularity not in spec.granularities:
        raise QueryError(f"{spec.name} is available per {', '.join(spec.granularities)} only")
    if spec.business_hours and not query.options.business_hours:
        raise QueryError(
            f"{spec.name} is recorded only in the business-hours mode "
            "(support_business_hours.enabled, docs/configuration.md)"
        )
    if spec.sessions and not query.options.sessions:
        raise QueryError(
            f"{spec.name} is a session metric and sessions are off in this deployment "
            "(sessions_enabled, docs/configuration.md)"
        )
    unknown = sorted(set(query.filters) - set(spec.dimensions))
    if unknown:
        raise QueryError(f"{spec.name} has no dimension(s) {unknown}; has {list(spec.dimensions)}")
    return await spec.compute(query, reader)
