"""Every dashboard panel and every rule, evaluated by a real Prometheus scraping a real worker.

A worker processes two days of simulated traffic (plus a few dead letters and a late event), a
Prometheus server loaded with the committed configuration and rules scrapes it every second, and
every PromQL expression of every committed Grafana dashboard, recording rule and alert is sent to
Prometheus' HTTP API. A renamed metric or label therefore leaves no dashboard blank unnoticed.
Rules on the lag exporter's series (kminion, a Go binary these machines do not run) must
evaluate here; their series and labels are checked against its release's list in the unit tests.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stream.config.settings import BusinessHoursSettings, ScoreActivity, ScoreSettings, Settings
from stream.engine.windows import Windows
from stream.metrics.business_hours import WEEKDAYS
from stream.tools.simulate import SimulationConfig, Simulator
from tests.support.events import event
from tests.support.harness import publish_events, publish_raw, wait_caught_up
from tests.support.ops import (
    NEEDS_HISTORY,
    alerts,
    dashboards,
    from_exporter,
    panel_exprs,
    raw_series,
    recorded_from,
)
from tests.support.prometheus import PrometheusServer
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e

RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes at a 15 s scrape interval


def noon_zone(now: datetime) -> str:
    """A fixed-offset zone in which it is about noon now: the current local day then holds
    half a day of traffic (and of closed sessions) whenever the test runs."""
    offset = 12 - now.hour  # -11 .. 12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-5 is UTC+5


def substitute(expr: str, board: dict[str, Any]) -> str:
    """The expression as Grafana sends it when the dashboard opens: each variable at its
    default, "All" of a multi-value variable as its allValue."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL)
    for var in board["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        value = var["allValue"] if var.get("includeAll") else var["current"]["value"]
        out = out.replace(f"${var['name']}", value)
    assert "$" not in out, f"unresolved variable in {out}"
    return out


def empty_queries(prom: PrometheusServer, exprs: dict[str, str]) -> dict[str, str]:
    return {name: expr for name, expr in exprs.items() if not prom.query(expr)}


async def wait_until_no_empty(
    prom: PrometheusServer, exprs: dict[str, str], timeout: float = 90.0
) -> dict[str, str]:
    """Rates need two scrapes and recording rules an evaluation: poll until every expression
    has data (or the deadline; then the caller reports the ones still empty)."""
    deadline = time.monotonic() + timeout
    while True:
        empty = empty_queries(prom, exprs)
        if not empty or time.monotonic() > deadline:
            return empty
        await asyncio.sleep(1.0)


async def test_dashboards_and_rules_have_data(settings: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    settings = settings.with_overrides(
        timezone=noon_zone(now),
        allowed_lateness_seconds=60.0,
        session_timeout_seconds=60.0,
        # Ticket times in business hours too, so that their dashboard panel has data (every
        # day 08:00–20:00 in the worker's zone: the simulated tickets run around the clock).
        support_business_hours=BusinessHoursSettings(
            enabled=True,
            schedule={d: ["08:00-20:00"] for d in WEEKDAYS},
        ),
        # Hourly scores over a 12 h lookback, so that the simulated fading cohort (fading over
        # a day) crosses into the at-risk band within the two simulated days: churn-risk
        # transitions are then real series, not placeholders.
        score=ScoreSettings(
            bucket_seconds=3600,
            lookback_seconds=12 * 3600,
            drop_window_seconds=6 * 3600,
            activities={
                "page_views": ScoreActivity(
                    events=["page_view", "screen_view"], weight=50, target=5
                ),
                "feature_use": ScoreActivity(events=["feature_used"], weight=30, target=2),
                "clicks": ScoreActivity(events=["click"], weight=20, target=2),
            },
        ),
    )
    worker = WorkerProcess(settings, tmp_path).start()
    prom = PrometheusServer(tmp_path, [f"127.0.0.1:{worker.port}"]).start()
    try:
        worker.wait_ready()
        sim = Simulator(
            SimulationConfig(
                seed=11,
                users=300,
                start_ms=now_ms - 48 * 3_600_000,
                fading_fraction=0.3,
                fade_seconds=24 * 3600,
            )
        )
        traffic = []
        for sim_event in sim.events():
            if sim_event.ts_ms > now_ms - 5_000:
                break
            traffic.append(sim_event.event)
        # A customer subscribed before this month and lost in it (a purchase of theirs moves
        # the watermark past the cancellation), so that the month has churn and a predicted CLV.
        zone = ZoneInfo(settings.timezone)
        month_ms = Windows(zone).start_of("month", now.timestamp()) * 1000
        traffic.insert(0, event("subscription_started", "u-churn", month_ms - 3_600_000))
        cancel = event("subscription_cancelled", "u-churn", now_ms - 7_200_000)
        traffic.insert(next(i for i, e in enumerate(traffic) if e["ts"] > cancel["ts"]), cancel)
        traffic.append(event("purchase", "u-churn", now_ms - 4_500, amount=10.0))
        # Today, whatever the simulation drew: an orphan click and a conversion.
        traffic.append(event("click", "u-orphan", now_ms - 4_000, campaign="c1", placement="p1"))
        traffic.append(event("conversion", "u-orphan", now_ms - 3_000))
        # Behind its partition's watermark (lateness 60 s): a late dead letter.
        traffic.append(event("page_view", "u-orphan", now_ms - 3_600_000))
        await publish_events(settings, traffic)
        await publish_raw(settings, settings.topics.clickstream, [(b"k", b"not json")] * 3)
        await wait_caught_up(settings, timeout=120)

        panels = {
            f"{board['uid']}: {title}: {expr}": substitute(expr, board)
            for board in dashboards()
            for title, expr in panel_exprs(board)
        }
        variables = {
            f"{board['uid']}: ${var['name']}": f'count by ({label}) ({metric}{{{label}=~".+"}})'
            for board in dashboards()
            for var in board["templating"]["list"]
            if var["type"] == "query"
            for metric, label in [var["definition"][len("label_values(") : -1].split(", ")]
        }
        derived = recorded_from()
        recordings = {
            name: name
            for name, raw in derived.items()
            if name not in NEEDS_HISTORY and not from_exporter(raw)
        }

        empty = await wait_until_no_empty(prom, {**panels, **variables, **recordings})
        assert not empty, f"no data for: {sorted(empty)}"

        # Comparisons with earlier days have no history here, and no lag exporter runs: those
        # rules must still evaluate.
        for name in derived.keys() - recordings.keys():
            prom.query(name)
        for name, rule in alerts().items():
            prom.query(rule["expr"])  # raises on a parse or evaluation error
            inner = raw_series(rule["expr"]) - NEEDS_HISTORY
            inner -= from_exporter(inner)
            missing = [s for s in sorted(inner) if not prom.query(f'{{__name__="{s}"}}')]
            assert not missing, f"{name}: series missing {missing}"
    finally:
        prom.stop()
        assert worker.stop() == 0
