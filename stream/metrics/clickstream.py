"""Clickstream metrics: page views, impressions, clicks (with orphans), conversions, feature use.

Fold side: per-event handlers that record facts into a batch's :class:`Deltas` (pure, no I/O).
Read side: the specs (API, CLI) and the Prometheus export over the same fields, which are:

    pv                      page_view + screen_view
    pv|<page>               the same for each tracked page
    imp|<campaign>|<place>  impressions        clk|<campaign>|<place>  clicks
    orph|<campaign>|<place> orphan clicks (day windows only: no impression of that campaign and
                            placement by that user on that local day)
    conv                    conversions        feat|<feature>  feature_used events
    users set ``feat|<feature>``: distinct users of a feature
    users set ``conv``: distinct users with a conversion (``user_conversion_rate``)
"""

from __future__ import annotations

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas
from stream.engine.fold import Handler
from stream.engine.keys import FIELD_SEP, escape, field
from stream.engine.windows import Windows
from stream.metrics.compute import active_users, counter_spec, counters, split_field, sums_spec
from stream.metrics.export import OTHER, ExportContext, grouped, labelled, sums_by_group
from stream.metrics.labels import NOT_SET
from stream.metrics.reader import QueryError, Reader
from stream.metrics.spec import DAY_ONLY, Gauge, MetricSpec, Query, Sums, Value, ratio

__all__ = ["SPECS", "ClickstreamFold", "export"]

PAGE_VIEWS = "pv"
IMPRESSIONS = "imp"
CLICKS = "clk"
ORPHAN_CLICKS = "orph"
CONVERSIONS = "conv"
#: Users set of those with at least one conversion in the window.
CONVERTED_USERS = "conv"
FEATURE = "feat"
CAMPAIGN_DIMS = ("campaign", "placement")
CLICKSTREAM = ("clickstream",)
_CLICK: str = EventType.CLICK.value  # a plain str: an enum member's lookup costs per event


class ClickstreamFold:
    def __init__(self, windows: Windows, tracked_pages: frozenset[str]) -> None:
        self.windows = windows
        self.page_fields = {page: field(PAGE_VIEWS, escape(page)) for page in tracked_pages}
        # (campaign, placement) -> (impression field, click field, orphan field, esc c, esc p)
        self._ad_fields: dict[tuple[str | None, str | None], tuple[str, str, str, str, str]] = {}
        self._feature_fields: dict[str | None, str] = {}  # feature -> escaped counter field

    def handlers(self) -> dict[str, Handler]:
        return {
            EventType.PAGE_VIEW: self.page_view,
            EventType.SCREEN_VIEW: self.page_view,
            EventType.IMPRESSION: self.ad,
            EventType.CLICK: self.ad,
            EventType.CONVERSION: self.conversion,
            EventType.FEATURE_USED: self.feature_used,
        }

    # The frequent handlers (page and screen views, ads, feature use) run once per such event:
    # dict work inlined, no helper calls (Deltas.count and Deltas.add_user, an ad pair's entry
    # spelled out). Conversions are rare and keep the helpers.

    def page_view(self, event: Event, minute: int, deltas: Deltas) -> None:
        counters = deltas.counters
        bucket = counters.get(minute)
        if bucket is None:
            bucket = counters[minute] = {}
        bucket[PAGE_VIEWS] = bucket.get(PAGE_VIEWS, 0) + 1
        page_field = self.page_fields.get(event.props.page)  # type: ignore[arg-type]
        if page_field is not None:
            bucket[page_field] = bucket.get(page_field, 0) + 1

    def _fields(
        self, campaign: str | None, placement: str | None
    ) -> tuple[str, str, str, str, str]:
        cached = self._ad_fields.get((campaign, placement))
        if cached is None:
            c, p = escape(campaign or NOT_SET), escape(placement or NOT_SET)
            cached = (
                field(IMPRESSIONS, c, p),
                field(CLICKS, c, p),
                field(ORPHAN_CLICKS, c, p),
                c,
                p,
            )
            if len(self._ad_fields) > 100_000:
                self._ad_fields.clear()
            self._ad_fields[(campaign, placement)] = cached
        return cached

    def ad(self, event: Event, minute: int, deltas: Deltas) -> None:
        """An impression or a click: one handler with its pair's entry spelled out (this runs
        for a quarter of clickstream events)."""
        which = 1 if event.type == _CLICK else 0  # the index into the pair's counts too
        props = event.props
        fields = self._ad_fields.get((props.campaign, props.placement))
        if fields is None:
            fields = self._fields(props.campaign, props.placement)
        name = fields[which]
        counters = deltas.counters
        bucket = counters.get(minute)
        if bucket is None:
            bucket = counters[minute] = {}
        bucket[name] = bucket.get(name, 0) + 1
        key = (self.windows.day_of_minute(minute), event.user_id, fields[3], fields[4])
        pairs = deltas.orphan_pairs
        entry = pairs.get(key)
        if entry is None:
            entry = pairs[key] = [0, 0, fields[2]]
        entry[which] += 1  # type: ignore[operator]

    def conversion(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.count(minute, CONVERSIONS)
        deltas.add_user(minute, CONVERTED_USERS, event.user_id)

    def feature_used(self, event: Event, minute: int, deltas: Deltas) -> None:
        feature = event.props.feature
        name = self._feature_fields.get(feature)
        if name is None:
            if len(self._feature_fields) > 10_000:
                self._feature_fields.clear()
            name = self._feature_fields[feature] = field(FEATURE, escape(feature or NOT_SET))
        counters = deltas.counters
        bucket = counters.get(minute)
        if bucket is None:
            bucket = counters[minute] = {}
        bucket[name] = bucket.get(name, 0) + 1
        members = deltas.users.get((minute, name))
        if members is None:
            members = deltas.users[(minute, name)] = set()
        members.add(event.user_id)


# ---- read side ---------------------------------------------------------------------------


async def _page_views(q: Query, r: Reader) -> list[Value]:
    page = q.filters.get("page")
    windows = await counters(q, r, CLICKSTREAM)
    if page is None:
        return [float(w.get(PAGE_VIEWS, 0)) for w in windows]
    if page not in q.options.tracked_pages:
        raise QueryError(f"page {page!r} is not tracked (see tracked_pages)")
    name = field(PAGE_VIEWS, escape(page))
    return [float(w.get(name, 0)) for w in windows]


async def _feature_users(q: Query, r: Reader) -> list[Value]:
    shards = await r.shards(CLICKSTREAM)
    feature = q.filters.get("feature")
    if feature is not None:
        names = [[field(FEATURE, escape(feature))] for _ in q.starts]
    else:  # union over every feature used in the window (names from the counters)
        windows = await r.counters(shards, q.granularity, q.starts)
        names = [[k for k in w if k.startswith(FEATURE + FIELD_SEP)] for w in windows]
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
    active = await active_users(q, r, None)
    return [ratio(u, a, 100) for u, a in zip(users, active, strict=True)]


async def _user_conversion_rate(q: Query, r: Reader) -> list[Value]:
    shards = await r.shards(CLICKSTREAM)
    converted = await r.distinct(shards, q.granularity, [[s] for s in q.starts], [CONVERTED_USERS])
    active = await active_users(q, r, None)
    return [ratio(c, a, 100) for c, a in zip(converted, active, strict=True)]


def _ctr(clicks: float, impressions: float) -> Value:
    return ratio(clicks, impressions, 100)


CTR = sums_spec(
    "ctr",
    "Clicks / impressions × 100 (null without impressions).",
    "percent",
    Sums((CLICKS, IMPRESSIONS), _ctr),
    CLICKSTREAM,
    CAMPAIGN_DIMS,
)
FEATURE_ADOPTION = MetricSpec(
    "feature_adoption",
    "Feature users / active users × 100.",
    "percent",
    _feature_adoption,
    dimensions=("feature",),
)

SPECS = [
    MetricSpec(
        "page_views",
        "page_view + screen_view events.",
        "count",
        _page_views,
        dimensions=("page",),
        gauge=Gauge("engagement_page_views", "page_view + screen_view events, current window."),
    ),
    counter_spec(
        "impressions", "Ad/campaign impressions.", IMPRESSIONS, CLICKSTREAM, CAMPAIGN_DIMS
    ),
    counter_spec(
        "clicks", "Ad/campaign clicks, orphans included.", CLICKS, CLICKSTREAM, CAMPAIGN_DIMS
    ),
    counter_spec(
        "orphan_clicks",
        "Clicks by a user with no impression of that campaign+placement that day.",
        ORPHAN_CLICKS,
        CLICKSTREAM,
        CAMPAIGN_DIMS,
        granularities=DAY_ONLY,
    ),
    CTR,
    counter_spec(
        "conversions",
        "Conversion events.",
        CONVERSIONS,
        CLICKSTREAM,
        gauge=Gauge("engagement_conversions", "Conversion events, current window."),
    ),
    counter_spec("feature_events", "feature_used events.", FEATURE, CLICKSTREAM, ("feature",)),
    MetricSpec(
        "feature_users",
        "Distinct users of a feature (HLL).",
        "users",
        _feature_users,
        dimensions=("feature",),
    ),
    FEATURE_ADOPTION,
    MetricSpec(
        "user_conversion_rate",
        "Users with at least one conversion / active users × 100 (conversion per visitor; "
        "session_conversion_rate is per session).",
        "percent",
        _user_conversion_rate,
        granularities=("day", "week", "month", "quarter"),
        gauge=Gauge(
            "engagement_user_conversion_ratio",
            "Users with a conversion / active users, current day.",
            "today",
            0.01,
        ),
    ),
]


async def export(ctx: ExportContext) -> None:
    """Per-label breakdowns: tracked pages, campaign × placement, features (capped labels)."""
    for label, g, start in ctx.spans("current"):
        window = str(label)
        fields = await ctx.counters(CLICKSTREAM, g, start)
        pages = ctx.gauge(
            "engagement_page_views_by_page", "Page views of tracked pages.", ["window", "page"]
        )
        for (page,), v in ctx.cap(labelled(fields, PAGE_VIEWS)).items():
            pages.add_metric([window, page], v)
        imps, clicks = labelled(fields, IMPRESSIONS), labelled(fields, CLICKS)
        weights = {k: imps.get(k, 0.0) + clicks.get(k, 0.0) for k in imps.keys() | clicks.keys()}
        groups = ctx.groups(weights)
        labels = ["window", "campaign", "placement"]
        g_imp = ctx.gauge("engagement_impressions", "Impressions, current window.", labels)
        g_clk = ctx.gauge("engagement_clicks", "Clicks (orphans included), current window.", labels)
        g_ctr = ctx.gauge("engagement_ctr_ratio", "Clicks / impressions, current window.", labels)
        ctr = sums_by_group(CTR, fields, groups)
        for k, v in grouped(imps, groups).items():
            g_imp.add_metric([window, *k], v)
        for k, v in grouped(clicks, groups).items():
            g_clk.add_metric([window, *k], v)
        for k, value in ctr.items():
            if value is not None:
                g_ctr.add_metric([window, *k], value / 100)
        feats = ctx.gauge(
            "engagement_feature_events",
            "feature_used events, current window.",
            ["window", "feature"],
        )
        for (feature,), v in ctx.cap(labelled(fields, FEATURE)).items():
            feats.add_metric([window, feature], v)
    await _export_today(ctx)


async def _export_today(ctx: ExportContext) -> None:
    """Orphan clicks (day windows only), feature users and adoption, current day."""
    _, _, day = ctx.spans("today")[0]
    fields = await ctx.counters(CLICKSTREAM, "day", day)
    orphans = ctx.gauge(
        "engagement_orphan_clicks",
        "Clicks without an impression, current day.",
        ["campaign", "placement"],
    )
    for k, v in ctx.cap(labelled(fields, ORPHAN_CLICKS)).items():
        orphans.add_metric(list(k), v)
    feature_names = sorted(k for k in fields if k.startswith(FEATURE + FIELD_SEP))

    def one_feature(feature: str) -> Query:
        return Query("day", [day], {"feature": feature}, ctx.windows, ctx.options, ctx.now)

    users: dict[tuple[str, ...], float] = {}
    for name in feature_names:
        feature = split_field(name)[1]
        (count,) = await _feature_users(one_feature(feature), ctx.reader)
        users[(feature,)] = count or 0.0
    capped = ctx.cap(users)
    if len(users) > ctx.limit:
        # Distinct users do not add up: the folded features' series is their union.
        kept = {f for (f,) in capped if f != OTHER}
        folded = [n for n in feature_names if split_field(n)[1] not in kept]
        shards = await ctx.reader.shards(CLICKSTREAM)
        (union,) = await ctx.reader.distinct(shards, "day", [[day]], folded)
        capped[(OTHER,)] = float(union)
    g_fu = ctx.gauge(
        "engagement_feature_users", "Distinct users of a feature, current day.", ["feature"]
    )
    g_fa = ctx.gauge(
        "engagement_feature_adoption_ratio",
        "Feature users / active users, current day.",
        ["feature"],
    )
    for (feature,), v in capped.items():
        g_fu.add_metric([feature], v)
        if feature != OTHER:
            (adoption,) = await FEATURE_ADOPTION.compute(one_feature(feature), ctx.reader)
            if adoption is not None:
                g_fa.add_metric([feature], adoption / 100)
