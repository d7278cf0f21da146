"""Turn query parameters into a metric time series: shared by the HTTP API and ``stream query``.

Parameters: ``start``/``end`` (RFC 3339 with offset, a date ``YYYY-MM-DD`` meaning local
midnight, or epoch seconds), ``granularity`` (minute|hour|day|week|month|quarter: the calendar
periods start on their first local day, a week on ``week_start``), and dimension filters. Bad input
raises :class:`~stream.metrics.reader.QueryError` with a message meant for the caller.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from stream.contract.types import Family
from stream.engine.windows import QUERY_GRANULARITIES, Windows
from stream.metrics import accounts
from stream.metrics.catalog import CATALOG
from stream.metrics.reader import QueryError, Reader
from stream.metrics.score import ScoreRules
from stream.metrics.score import read as score_read
from stream.metrics.spec import MetricOptions, Query, evaluate

__all__ = [
    "SCORE_OFF",
    "UnknownMetric",
    "customer_report",
    "customer_value",
    "list_metrics",
    "run_query",
]

#: What the customer API and ``stream query --customer`` answer where no scores are kept.
SCORE_OFF = "customer scores are off in this deployment (score.enabled = false)"
MAX_POINTS = 2000
DEFAULT_SPAN = {
    "minute": 3600,
    "hour": 48 * 3600,
    "day": 30 * 86400,
    "week": 13 * 7 * 86400,
    "month": 365 * 86400,
    "quarter": 365 * 86400,
}
RESERVED = frozenset({"start", "end", "granularity"})


class UnknownMetric(LookupError):
    pass


#: Times a query may name, in epoch seconds: 1970-01-01 up to 3000-01-01. Window arithmetic
#: past year 9999 overflows, and no event is stamped outside this range.
TIME_RANGE = (0.0, 32_503_680_000.0)


def parse_time(text: str, windows: Windows) -> float:
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            if len(text) == 10:
                d = date.fromisoformat(text)
                seconds = datetime(d.year, d.month, d.day, tzinfo=windows.zone).timestamp()
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise QueryError(f"time {text!r} needs a UTC offset")
                seconds = parsed.timestamp()
        except (ValueError, OverflowError):
            raise QueryError(
                f"cannot parse time {text!r} (RFC 3339, YYYY-MM-DD or epoch s)"
            ) from None
    low, high = TIME_RANGE
    if not low <= seconds < high:  # NaN fails both comparisons
        raise QueryError(f"time {text!r} is outside 1970-01-01 .. 3000-01-01")
    return seconds


def rfc3339(ts: int, windows: Windows) -> str:
    return datetime.fromtimestamp(ts, windows.zone).isoformat()


async def run_query(
    name: str,
    params: Mapping[str, str],
    reader: Reader,
    windows: Windows,
    options: MetricOptions,
    now: float | None = None,
) -> dict[str, Any]:
    spec = CATALOG.get(name)
    if spec is None:
        raise UnknownMetric(name)
    default = "day" if "day" in spec.granularities else spec.granularities[-1]
    granularity = params.get("granularity", default)
    if granularity not in DEFAULT_SPAN:
        raise QueryError(f"granularity must be one of {', '.join(QUERY_GRANULARITIES)}")
    now = time.time() if now is None else now
    end = parse_time(params["end"], windows) if params.get("end") else now
    start = (
        parse_time(params["start"], windows)
        if params.get("start")
        else end - DEFAULT_SPAN[granularity]
    )
    if start >= end:
        raise QueryError("start must be before end")
    starts: list[int] = []
    for s in windows.iter_starts(granularity, start, end):
        starts.append(s)
        if len(starts) > MAX_POINTS:
            raise QueryError(f"more than {MAX_POINTS} points; widen granularity or narrow range")
    filters = {k: v for k, v in params.items() if k not in RESERVED}
    query = Query(granularity, starts, filters, windows, options, now)
    values = await evaluate(spec, query, reader)
    return {
        "metric": name,
        "granularity": granularity,
        "unit": spec.unit,
        "points": [
            {"start": rfc3339(s, windows), "value": v} for s, v in zip(starts, values, strict=True)
        ],
    }


def list_metrics() -> list[dict[str, Any]]:
    return [
        {
            "name": spec.name,
            "description": spec.description,
            "unit": spec.unit,
            "granularities": list(spec.granularities),
            "dimensions": list(spec.dimensions),
        }
        for spec in CATALOG.values()
    ]


async def customer_value(user_id: str, reader: Reader) -> dict[str, Any]:
    """A customer's lifetime value: the running total of their purchases and subscription
    payments (never a Prometheus label: one series per customer would be unbounded)."""
    shards = await reader.shards([Family.ACCOUNT.value])
    cents = await reader.total_field(shards, accounts.LTV, accounts.customer_key(user_id))
    return {"user_id": user_id, "lifetime_value": cents / 100}


async def customer_report(user_id: str, reader: Reader, rules: ScoreRules) -> dict[str, Any] | None:
    """Everything the read side knows of one customer: engagement and health score (the
    clickstream partitions' customer state) and lifetime value (the account partitions' running
    totals). None when neither knows the customer."""
    body = await score_read.customer(reader, rules, user_id)
    value = (await customer_value(user_id, reader))["lifetime_value"]
    if body is None:
        if not value:
            return None
        body = {"customer": user_id, "score": None, "band": None, "health_score": None}
    body["lifetime_value"] = value
    return body
