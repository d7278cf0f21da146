"""Read side of customer scores: one customer, the at-risk list, and the scrape-time gauges.

Customer state lives on the home family's partition shards (:mod:`stream.metrics.score.state`);
a customer's shard is found by asking every home shard for its field in one pipeline (cheaper
than re-deriving the producer's partitioner, and right whatever the partition count). The
at-risk list merges the per-shard sorted sets, lowest score first, with a ``score:user`` cursor.
Gauges sum the per-shard running totals the apply maintains: never a per-customer label, and
the channel label is already bounded (configured channels, ``other``, ``(not set)``).

Its own module because it is the only part of the score that talks to Redis, and only reads:
the HTTP API, ``stream query`` and the Prometheus exporter call it, the engine's fold and apply
never do (they see the state through :mod:`stream.metrics.score.state`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from stream.engine.deltas import pair_digest
from stream.metrics.reader import Reader
from stream.metrics.score.codec import load as load_customer
from stream.metrics.score.evaluation import contributions
from stream.metrics.score.rules import BANDS, HOME_FAMILY, SCORE_BOUNDS, ScoreRules
from stream.metrics.score.state import AT_RISK_SET, SCORE_SUM, STATE, TOTALS

__all__ = ["at_risk", "customer", "gauge_families", "list_params", "totals"]


async def _home_shards(reader: Reader) -> list[str]:
    return await reader.shards([HOME_FAMILY])


async def customer(reader: Reader, rules: ScoreRules, user: str) -> dict[str, Any] | None:
    shards = await _home_shards(reader)
    field = pair_digest("customer", user)
    async with reader.client.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.hget(reader.keys.keyed(shard, STATE), field)
        values = await pipe.execute()
    found = [v for v in values if v is not None]
    if not found:
        return None
    c = load_customer(found[0], rules)  # with the activity merged since its last evaluation
    amounts = c.amounts(rules)
    parts = contributions(amounts, rules)
    present = rules.present()
    return {
        "customer": c.user,
        "score": c.score if c.score >= 0 else None,
        "band": c.band,
        "health_score": c.health if c.health >= 0 else None,
        "evaluated_at": c.evaluated * rules.bucket_ms if c.evaluated >= 0 else None,
        "last_seen": c.last_ts,
        "channel": c.channel,
        "activities": [
            {
                "activity": a.name,
                # a decayed activity's amount is fractional (fixed point in the state)
                "count": round(n / a.unit, 3) if a.decays else n,
                "target": a.target,
                "points": round(float(p), 2),
                "missing": not ok,
            }
            for a, n, p, ok in zip(rules.activities, amounts, parts, present, strict=True)
        ],
        "recent_transitions": [
            {"ts": b * rules.bucket_ms, "reason": r, "old_score": o, "new_score": s}
            for b, r, o, s in c.recent
        ],
    }


def _parse_cursor(cursor: str | None) -> tuple[int, str]:
    if not cursor:
        return (-1, "")
    score, _, user = cursor.partition(":")
    return (int(score), user)


def list_params(query: dict[str, str]) -> tuple[str, int, str | None]:
    """band, limit, cursor of a list request; only the at-risk band is listed (it is ranked)."""
    band = query.get("band", "at_risk")
    if band != "at_risk":
        raise ValueError("only band=at_risk is listed")
    try:
        limit = int(query.get("limit", "50"))
        _parse_cursor(query.get("cursor"))
    except ValueError:
        raise ValueError("limit must be an integer and cursor come from next_cursor") from None
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be 1..1000")
    return band, limit, query.get("cursor") or None


async def at_risk(reader: Reader, limit: int, cursor: str | None) -> dict[str, Any]:
    """Customers in the at-risk band, lowest score first (ties by user id), after ``cursor``."""
    after = _parse_cursor(cursor)
    shards = await _home_shards(reader)
    rows: list[tuple[int, str]] = []
    for shard in shards:
        key = reader.keys.zset(shard, AT_RISK_SET)
        # Members with the cursor's score may precede it: read that score fully, then `limit`.
        raw: list[tuple[bytes, float]] = await reader.client.zrangebyscore(
            key, max(after[0], 0), "+inf", withscores=True
        )  # type: ignore[assignment]  # redis-py types the reply loosely
        for member, score in raw:
            row = (int(score), member.decode())
            if row > after:
                rows.append(row)
    rows.sort()
    page = rows[:limit]
    nxt = f"{page[-1][0]}:{page[-1][1]}" if len(rows) > limit else None
    return {
        "band": "at_risk",
        "customers": [{"customer": u, "score": s} for s, u in page],
        "next_cursor": nxt,
    }


async def totals(reader: Reader) -> dict[str, int]:
    summed: dict[str, int] = {}
    for shard in await _home_shards(reader):
        key = reader.keys.totals(shard, TOTALS)
        got: dict[bytes, bytes] = await reader.client.hgetall(key)  # type: ignore[assignment]
        for k, v in got.items():
            name = k.decode()
            summed[name] = summed.get(name, 0) + int(v)
    return summed


async def gauge_families(reader: Reader) -> list[Metric]:
    """Customers per band (global and per acquisition channel) and the score distribution."""
    t = await totals(reader)
    bands = GaugeMetricFamily(
        "engagement_score_band_customers", "Scored customers per engagement band.", labels=["band"]
    )
    for band in BANDS:
        bands.add_metric([band], t.get(f"band|{band}", 0))
    by_channel = GaugeMetricFamily(
        "engagement_score_band_customers_by_channel",
        "Scored customers per band and acquisition channel (bounded labels).",
        labels=["channel", "band"],
    )
    for name, n in sorted(t.items()):
        if name.startswith("channel|") and n:
            _, channel, band = name.split("|")
            by_channel.add_metric([channel, band], n)
    cumulative, buckets = 0, []
    for bound in SCORE_BOUNDS:
        cumulative += t.get(f"score|{bound}", 0)
        buckets.append((str(bound), cumulative))
    buckets.append(("+Inf", cumulative))
    histogram = GaugeHistogramMetricFamily(
        "engagement_customer_score", "Distribution of current engagement scores (0-100)."
    )
    histogram.add_metric([], buckets, t.get(SCORE_SUM, 0))
    return [bands, by_channel, histogram]
