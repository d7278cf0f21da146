"""Activity across every family: accepted events per type, active users, DAU/WAU/MAU, stickiness.

The engine's fold records both for every accepted event (:mod:`stream.engine.fold`): the counter
``ev|<type>`` and, if the user did the event (its type is not in ``passive_events``, and for a
support event its ``author`` is not in ``passive_authors``), the user in the distinct-count set
``active``. This module owns their specs and their export.
"""

from __future__ import annotations

from stream.contract.types import EventType, Family
from stream.engine.fold import EVENT_FIELD_PREFIX
from stream.metrics.compute import active_users, counters
from stream.metrics.export import ExportContext
from stream.metrics.reader import QueryError, Reader
from stream.metrics.spec import DAY_ONLY, Compute, Gauge, MetricSpec, Query, Value, ratio

__all__ = ["SPECS", "export"]

ALL_FAMILIES = tuple(f.value for f in Family)


async def _events(q: Query, r: Reader) -> list[Value]:
    wanted = q.filters.get("type")
    if wanted is not None and wanted not in {t.value for t in EventType}:
        raise QueryError(f"unknown event type {wanted!r}")
    out: list[Value] = []
    for w in await counters(q, r, ALL_FAMILIES):
        if wanted is not None:
            out.append(float(w.get(EVENT_FIELD_PREFIX + wanted, 0)))
        else:
            out.append(float(sum(v for k, v in w.items() if k.startswith(EVENT_FIELD_PREFIX))))
    return out


def active_metric(days: int | None) -> Compute:
    async def compute(q: Query, r: Reader) -> list[Value]:
        return await active_users(q, r, days)

    return compute


async def _stickiness(q: Query, r: Reader) -> list[Value]:
    dau = await active_users(q, r, None)
    mau = await active_users(q, r, 30)
    return [ratio(d, m) for d, m in zip(dau, mau, strict=True)]


SPECS = [
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
        gauge=Gauge(
            "engagement_active_users", "Distinct active users in the current window (HLL)."
        ),
    ),
    MetricSpec(
        "dau",
        "Daily active users (HLL).",
        "users",
        active_metric(None),
        DAY_ONLY,
        families=None,
        gauge=Gauge("engagement_dau", "Daily active users, current day (HLL).", "today"),
    ),
    MetricSpec(
        "wau",
        "Active users in the 7 days ending with the day (HLL).",
        "users",
        active_metric(7),
        DAY_ONLY,
        families=None,
        gauge=Gauge("engagement_wau", "Active users, 7 days to today (HLL).", "today"),
    ),
    MetricSpec(
        "mau",
        "Active users in the 30 days ending with the day (HLL).",
        "users",
        active_metric(30),
        DAY_ONLY,
        families=None,
        gauge=Gauge("engagement_mau", "Active users, 30 days to today (HLL).", "today"),
    ),
    MetricSpec(
        "stickiness",
        "DAU / MAU (null when MAU is 0).",
        "ratio",
        _stickiness,
        DAY_ONLY,
        families=None,
        gauge=Gauge("engagement_stickiness_ratio", "DAU / MAU, current day.", "today"),
    ),
]


async def export(ctx: ExportContext) -> None:
    """Events by type (a bounded label: the event-type enum) in the current windows."""
    for label, g, start in ctx.spans("current"):
        events = ctx.gauge(
            "engagement_events", "Accepted events by type, current window.", ["window", "type"]
        )
        for name, v in (await ctx.counters(None, g, start)).items():
            if name.startswith(EVENT_FIELD_PREFIX):
                events.add_metric([str(label), name[len(EVENT_FIELD_PREFIX) :]], v)
