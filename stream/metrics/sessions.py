"""Sessions in event time: sessionize, merge out-of-order events, close on the watermark. Pure.

Definitions (metric-definitions.md, GA4/PostHog defaults):

* A session is a run of one user's clickstream activity under one ``session_id`` (events without
  one share the empty id) in which consecutive events are less than ``timeout`` apart; a gap of
  ``timeout`` or more starts a new session. No split at midnight or on a campaign change.
* Hard cap: an event ``cap`` or more after its session's first event starts a new session.
* Duration = last event − first event (one-event sessions last 0 s and count).
* Engaged (GA4): lasts more than ``engaged_after_ms``, or has a conversion, or has ≥ 2 page views.
  Bounce = not engaged (GA4); the UA definition (≤ 1 page view) is an option.
* Platform and channel are those of the session's first event (bounded label sets).

Why it is exact under any arrival order within the allowed lateness: open sessions of a
``(user, session_id)`` key are kept as mergeable aggregates; a new event joins (or bridges and
merges) every open session it is less than ``timeout`` from. A session is closed only once the
partition watermark (max event time − allowed lateness) reaches ``min(last + timeout,
first + cap)``: every later event is at or past the watermark, so none can join it any more and
its final content no longer depends on arrival order or batch boundaries. A closed session is
attributed to the window of its first event.

The one order-dependent corner: an out-of-order event that would merge sessions into one longer
than the cap joins the latest of them it fits in instead of re-cutting at first + cap (the
aggregates do not keep every timestamp). In-order streams match the greedy batch cut exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine import compiled
from stream.engine.deltas import Deltas, pair_digest
from stream.engine.fold import Handler
from stream.engine.keyed import KeyedUpdates
from stream.engine.keys import FIELD_SEP, field
from stream.metrics import session_core
from stream.metrics.buckets import bucket_counts
from stream.metrics.compute import counters, hash_median, one_dim_slice
from stream.metrics.export import ExportContext, cap_labels, histogram_buckets, labelled
from stream.metrics.labels import NOT_SET, OTHER
from stream.metrics.reader import Reader
from stream.metrics.spec import Gauge, MetricOptions, MetricSpec, Query, Value, ratio

__all__ = [
    "CORE",
    "DIMENSIONS",
    "SPECS",
    "Session",
    "SessionHit",
    "SessionRules",
    "SessionState",
    "export",
    "pack",
    "settle",
    "unpack",
]

# The sessionizer's core: the compiled build of session_core.py when there is a current one
# (same code, same names; typed as the source).
if TYPE_CHECKING:
    from stream.metrics.session_core import Session, SessionHit, pack, unpack

    core = session_core
else:
    core = compiled.load(session_core)
    Session, pack, unpack = core.Session, core.pack, core.unpack
    SessionHit = session_core.SessionHit
#: Which build of the core this process runs: "compiled" or "python".
CORE = "compiled" if compiled.CORES.get(session_core.__name__) else "python"


DIMENSIONS = ("platform", "channel")
STEM, MEASURES, DURATION_HASH = session_core.STEM, session_core.MEASURES, session_core.DURATION_HASH


@dataclass(frozen=True)
class SessionRules:
    timeout_ms: int = 30 * 60_000
    cap_ms: int = 24 * 3_600_000
    engaged_after_ms: int = 10_000
    platforms: frozenset[str] = frozenset({"web", "ios", "android"})
    channels: frozenset[str] = frozenset(
        {"organic", "paid", "email", "social", "referral", "direct", "affiliate"}
    )

    def platform_label(self, value: str | None) -> str:
        if value is None:
            return NOT_SET
        return value if value in self.platforms else OTHER

    def channel_label(self, value: str | None) -> str:
        if value is None:
            return NOT_SET
        return value if value in self.channels else OTHER


def settle(
    sessions: list[Session], hits: Sequence[SessionHit], watermark: int, rules: SessionRules
) -> tuple[list[Session], list[Session]]:
    """Add a batch's hits (any order), then split into (still open, closed by the watermark)."""
    return core.settle(sessions, hits, watermark, rules.timeout_ms, rules.cap_ms)


# ---- metric facts of closed sessions ------------------------------------------------------


def record_closed(session: Session, rules: SessionRules, deltas: Deltas) -> None:
    """Count a closed session into the window of its first event."""
    core.record_closed(session, rules.engaged_after_ms, deltas.counters, deltas.hashes)


# ---- the engine side: fold handler and keyed state -----------------------------------------

#: Clickstream events that are user activity within a session (impressions are not).
SESSION_EVENTS = (
    EventType.PAGE_VIEW,
    EventType.SCREEN_VIEW,
    EventType.CLICK,
    EventType.CONVERSION,
    EventType.FEATURE_USED,
)
#: Memoised (user, session id) digests per worker: ~150 bytes each, so at most ~30 MB.
FIELD_CACHE_SIZE = 200_000
_PAGE_VIEWS = frozenset({EventType.PAGE_VIEW.value, EventType.SCREEN_VIEW.value})


class SessionState:
    """Sessions as engine keyed state: one hash field per (user, session id) with open sessions."""

    name = "ses"
    families = frozenset({Family.CLICKSTREAM.value})
    pending = False  # no pending records after the values (stream.engine.keyed)

    def __init__(self, rules: SessionRules, due_limit: int = 20_000) -> None:
        self.rules = rules
        self.due_limit = due_limit
        self._platforms: dict[str | None, str] = {p: p for p in rules.platforms}
        self._platforms[None] = NOT_SET
        self._channels: dict[str | None, str] = {c: c for c in rules.channels}
        self._channels[None] = NOT_SET
        self._fields: dict[tuple[str, str], str] = {}

    def plan(self, items: Mapping[str, object], watermark: int) -> list[str]:
        """Every touched session is read (:meth:`stream.engine.keyed.KeyedState.plan`)."""
        return list(items)

    def handlers(self) -> dict[str, Handler]:
        return {t.value: self.hit for t in SESSION_EVENTS}

    def hit(self, event: Event, minute: int, deltas: Deltas) -> None:
        # Hot path (once per clickstream event): plain dict work, no helper calls.
        props = event.props
        per_key = deltas.keyed.get(self.name)
        if per_key is None:
            per_key = deltas.keyed[self.name] = {}
        key = (event.user_id, event.session_id or "")
        platform = self._platforms.get(props.platform) or self.rules.platform_label(props.platform)
        channel = self._channels.get(props.channel) or self.rules.channel_label(props.channel)
        kind = event.type
        item = (event.ts_ms, kind in _PAGE_VIEWS, kind == "conversion", platform, channel)
        items = per_key.get(key)
        if items is None:
            per_key[key] = [item]
        else:
            items.append(item)

    def field_of(self, key: tuple[str, str]) -> str:
        # A digest: user ids never reach Redis in clear, and every field is 16 bytes. The same
        # keys come back batch after batch, so digests are memoised (bounded).
        digest = self._fields.get(key)
        if digest is None:
            if len(self._fields) >= FIELD_CACHE_SIZE:
                self._fields.clear()
            digest = self._fields[key] = pair_digest(*key)
        return digest

    def settle(
        self,
        stored: Mapping[str, str | bytes | None],
        items: Mapping[str, list[SessionHit]],
        watermark: int,
        deltas: Deltas,
    ) -> KeyedUpdates:
        rules = self.rules
        return core.settle_fields(
            stored,
            items,
            watermark,
            rules.timeout_ms,
            rules.cap_ms,
            rules.engaged_after_ms,
            deltas.counters,
            deltas.hashes,
        )


# ---- read side ---------------------------------------------------------------------------

CLICKSTREAM = (Family.CLICKSTREAM.value,)
Measures = dict[str, int]


def session_measures(fields: dict[str, int], suffix: str = "") -> Measures:
    """The session measures of one window's counters (all sessions, or one platform/channel)."""
    return {m: fields.get(STEM + m + suffix, 0) for m in MEASURES}


def _bounce(m: Measures, options: MetricOptions) -> Value:
    bounced = m["1p"] if options.bounce_definition == "ua" else m["n"] - m["eng"]
    return ratio(float(bounced), m["n"], 100)


def session_spec(
    name: str,
    description: str,
    unit: str,
    value: Callable[[Measures, MetricOptions], Value],
    gauge: Gauge,
) -> MetricSpec:
    """A metric computed from one window's session measures."""

    async def compute(q: Query, r: Reader) -> list[Value]:
        suffix, _ = one_dim_slice(q, DIMENSIONS)
        return [
            value(session_measures(w, suffix), q.options) for w in await counters(q, r, CLICKSTREAM)
        ]

    return MetricSpec(
        name,
        description,
        unit,
        compute,
        dimensions=DIMENSIONS,
        sessions=True,
        settled=True,
        gauge=gauge,
    )


async def _median(q: Query, r: Reader) -> list[Value]:
    _, prefix = one_dim_slice(q, DIMENSIONS)
    return await hash_median(q, r, CLICKSTREAM, DURATION_HASH, prefix)


SPECS = [
    session_spec(
        "sessions",
        "Closed sessions, in the window of their first event.",
        "count",
        lambda m, _: float(m["n"]),
        Gauge("engagement_sessions", "Closed sessions, by window of their first event.", "settled"),
    ),
    session_spec(
        "session_duration_avg",
        "Mean session duration (last − first event; one-event sessions count 0 s).",
        "seconds",
        lambda m, _: ratio(float(m["ms"]), m["n"], 0.001),
        Gauge(
            "engagement_session_duration_avg_seconds",
            "Mean duration of closed sessions.",
            "settled",
        ),
    ),
    MetricSpec(
        "session_duration_median",
        "Median session duration over duration buckets: exact whole seconds below 64 s, "
        "within 1/64 (1.6 %) of the exact median above.",
        "seconds",
        _median,
        dimensions=DIMENSIONS,
        sessions=True,
        settled=True,
    ),
    session_spec(
        "engagement_rate",
        "Engaged sessions / sessions × 100 (GA4: > 10 s, a conversion or ≥ 2 page views).",
        "percent",
        lambda m, _: ratio(float(m["eng"]), m["n"], 100),
        Gauge(
            "engagement_session_engagement_ratio",
            "Engaged sessions / sessions (GA4).",
            "settled",
            0.01,
        ),
    ),
    session_spec(
        "bounce_rate",
        "Bounced sessions / sessions × 100 (GA4: not engaged; UA option: ≤ 1 page view).",
        "percent",
        _bounce,
        Gauge(
            "engagement_session_bounce_ratio",
            "Bounced sessions / sessions (configured definition).",
            "settled",
            0.01,
        ),
    ),
    session_spec(
        "session_conversion_rate",
        "Sessions with ≥ 1 conversion / sessions × 100.",
        "percent",
        lambda m, _: ratio(float(m["conv"]), m["n"], 100),
        Gauge(
            "engagement_session_conversion_ratio",
            "Sessions with a conversion / sessions.",
            "settled",
            0.01,
        ),
    ),
    session_spec(
        "pages_per_session",
        "Page and screen views / sessions.",
        "ratio",
        lambda m, _: ratio(float(m["pv"]), m["n"]),
        Gauge("engagement_pages_per_session", "Page and screen views per session.", "settled"),
    ),
]

DURATION_FAMILY = "engagement_session_duration_seconds"
DURATION_BUCKETS = (1, 10, 30, 60, 180, 600, 1800, 3600, 7200, 14400, 43200, 86400)


async def export(ctx: ExportContext) -> None:
    """Closed sessions by platform and channel, and the duration histogram. Sessions close an
    allowed lateness after their last event, so with the 24 h default the ``previous_day``
    window is the one that fills up."""
    if not ctx.options.sessions:
        return
    shards = await ctx.reader.shards(CLICKSTREAM)
    for label, g, start in ctx.spans("settled", settled=True):
        window = str(label)
        fields = await ctx.counters(CLICKSTREAM, g, start)
        for dim in DIMENSIONS:
            by_dim = ctx.gauge(
                f"engagement_sessions_by_{dim}", f"Closed sessions by {dim}.", ["window", dim]
            )
            per = labelled(fields, STEM + "n" + FIELD_SEP + dim)
            for (value,), n in cap_labels(per, ctx.limit).items():
                by_dim.add_metric([window, value], n)
        (durations,) = await ctx.reader.hashes(shards, g, [start], DURATION_HASH)
        counts = bucket_counts(durations, field("all", ""))
        ctx.histogram(
            DURATION_FAMILY,
            "Durations of closed sessions in the window (whole seconds, in duration buckets).",
            ["window"],
        ).add_metric(
            [window],
            histogram_buckets(counts, DURATION_BUCKETS),
            gsum_value=session_measures(fields)["ms"] / 1000,
        )
