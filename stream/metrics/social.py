"""Social metrics: actions per platform and window, engagement rate, followers. Fold side, pure.

Counter fields ``soc.<action>|<platform>`` (platform from a bounded set), actions ``imp`` (post
impressions), ``like``, ``comment``, ``share``, ``save``, ``mention``, ``follow``, ``unfollow``.

Followers are a level, not a window sum: the follower count at time t is the number of ``follow``
minus ``unfollow`` events stamped before t (events since the stream began; a deployment that
needs an absolute figure replays or seeds history). Each follow/unfollow also moves the running
total ``followers`` (field per platform, never expires), so the read side gets the level at any
window start as total − the follows/unfollows since (see :mod:`stream.metrics.levels`): exact
under any arrival order, because both are plain sums.
"""

from __future__ import annotations

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine.deltas import Deltas
from stream.engine.fold import Handler
from stream.engine.keys import escape, field, unescape
from stream.metrics.compute import counter_spec, field_sum, level_windows, sums_spec
from stream.metrics.export import ExportContext, grouped, labelled, sums_by_group
from stream.metrics.labels import BoundedLabels
from stream.metrics.reader import Reader
from stream.metrics.spec import Gauge, MetricSpec, Query, Sums, Value, ratio

__all__ = ["ACTIONS", "DIMENSIONS", "SPECS", "SocialFold", "export", "growth"]

DIMENSIONS = ("platform",)
SOCIAL = (Family.SOCIAL.value,)
#: Running total of follows − unfollows per platform (never expires).
FOLLOWERS = "followers"
#: Counter-field stem: ``soc.<action>|<platform>``.
STEM = "soc."
#: Event type -> action name in counter fields.
ACTIONS: dict[str, str] = {
    EventType.POST_IMPRESSION.value: "imp",
    EventType.LIKE.value: "like",
    EventType.COMMENT.value: "comment",
    EventType.SHARE.value: "share",
    EventType.SAVE.value: "save",
    EventType.MENTION.value: "mention",
    EventType.FOLLOW.value: "follow",
    EventType.UNFOLLOW.value: "unfollow",
}
ACTION_NAMES = tuple(ACTIONS.values())
#: Interactions in the engagement rate's numerator.
ENGAGEMENTS = ("like", "comment", "share", "save")
_FOLLOW_DELTA = {EventType.FOLLOW.value: 1, EventType.UNFOLLOW.value: -1}


def growth(start: float, end: float) -> float | None:
    """(end − start) / start × 100; null when there is no (positive) start to grow from."""
    if start <= 0:
        return None
    return (end - start) / start * 100


class SocialFold:
    def __init__(self, platforms: BoundedLabels) -> None:
        self.platforms = platforms

    def handlers(self) -> dict[str, Handler]:
        return {t: self.action for t in ACTIONS}

    def action(self, event: Event, minute: int, deltas: Deltas) -> None:
        platform = self.platforms(event.props.platform)
        deltas.count(minute, field(STEM + ACTIONS[event.type], platform))
        step = _FOLLOW_DELTA.get(event.type)
        if step is not None:
            deltas.total(FOLLOWERS, platform, step)


# ---- read side ---------------------------------------------------------------------------


async def _followers(q: Query, r: Reader) -> list[tuple[float, float]]:
    """(followers at the start, change within) of each window."""
    platform = q.filters.get("platform")

    def total_of(fields: dict[str, int]) -> float:
        if platform is None:
            return float(sum(fields.values()))
        return float(fields.get(escape(platform), 0))

    def change(fields: dict[str, int]) -> float:
        follows = field_sum(fields, STEM + "follow", DIMENSIONS, q)
        return follows - field_sum(fields, STEM + "unfollow", DIMENSIONS, q)

    return await level_windows(q, r, SOCIAL, FOLLOWERS, total_of, change)


async def _followers_end(q: Query, r: Reader) -> list[Value]:
    return [start + change for start, change in await _followers(q, r)]


async def _follower_growth(q: Query, r: Reader) -> list[Value]:
    return [growth(start, start + change) for start, change in await _followers(q, r)]


def _engagement_rate(impressions: float, *engagements: float) -> Value:
    return ratio(sum(engagements), impressions, 100)


ENGAGEMENT_RATE = sums_spec(
    "social_engagement_rate",
    "(likes + comments + shares + saves) / post impressions × 100.",
    "percent",
    Sums((STEM + "imp", *(STEM + a for a in ENGAGEMENTS)), _engagement_rate),
    SOCIAL,
    DIMENSIONS,
)

SPECS = [
    *(
        counter_spec(name, f"Social {name.replace('_', ' ')}.", STEM + action, SOCIAL, DIMENSIONS)
        for action, name in (
            ("imp", "post_impressions"),
            ("like", "likes"),
            ("comment", "comments"),
            ("share", "shares"),
            ("save", "saves"),
            ("mention", "mentions"),
            ("follow", "follows"),
            ("unfollow", "unfollows"),
        )
    ),
    ENGAGEMENT_RATE,
    MetricSpec(
        "followers",
        "Followers at the window's end: follows − unfollows stamped before it.",
        "count",
        _followers_end,
        dimensions=DIMENSIONS,
        families=SOCIAL,
    ),
    MetricSpec(
        "follower_growth",
        "(followers at end − at start) / at start × 100 (null when start ≤ 0).",
        "percent",
        _follower_growth,
        dimensions=DIMENSIONS,
        families=SOCIAL,
        gauge=Gauge(
            "engagement_social_follower_growth_ratio",
            "(Followers at end − at start) / at start.",
            "settled",
            0.01,
        ),
    ),
]


async def export(ctx: ExportContext) -> None:
    """Actions and engagement rate by platform (capped by post impressions), followers now."""
    for label, g, start in ctx.spans("settled"):
        window = str(label)
        fields = await ctx.counters(SOCIAL, g, start)
        actions = {a: labelled(fields, STEM + a) for a in ACTION_NAMES}
        platforms = {p for per in actions.values() for p in per}
        groups = ctx.groups({p: actions["imp"].get(p, 0.0) for p in platforms})
        per = ctx.gauge(
            "engagement_social_actions",
            "Social actions by platform.",
            ["window", "platform", "action"],
        )
        for action, values in actions.items():
            for (platform,), n in grouped(values, groups).items():
                per.add_metric([window, platform, action], n)
        rate = ctx.gauge(
            "engagement_social_engagement_ratio",
            "(Likes + comments + shares + saves) / post impressions.",
            ["window", "platform"],
        )
        rates = sums_by_group(ENGAGEMENT_RATE, fields, groups)
        for (platform,), value in rates.items():
            if value is not None:
                rate.add_metric([window, platform], value / 100)
    shards = await ctx.reader.shards(SOCIAL)
    totals = await ctx.reader.totals(shards, FOLLOWERS)
    followers: dict[tuple[str, ...], float] = {(unescape(k),): float(v) for k, v in totals.items()}
    per_platform = ctx.gauge(
        "engagement_social_followers",
        "Follows − unfollows since the stream began, by platform.",
        ["platform"],
    )
    for (platform,), n in ctx.cap(followers).items():
        per_platform.add_metric([platform], n)
