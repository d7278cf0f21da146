"""Weeks, months and quarters on the real engine, against the batch reference.

Four months of simulated traffic of all five families, in a zone with a DST change
(America/New_York) and weeks starting on Sunday, crossing a quarter's end, plus customers who
subscribe, cancel and come back across period boundaries. The reference cuts each calendar
period with ``datetime`` and computes its value from that period's own events (exact sets for
distinct users, the period's own numerator and denominator, the customers present at the
period's start); the stream reads the union of the stored days. Every metric that has a
calendar series must match at every period.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from stream.config.settings import Settings
from stream.tools.simulate import DAY, HOUR, SimulationConfig, Simulator
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration

SPAN_DAYS = 120


def churning_customers(start_ms: int, rng: random.Random) -> list[dict[str, Any]]:
    """Subscriptions that start, end and start again, some within one period, some across."""
    out = []
    for i in range(24):
        user = f"cust{i:02d}"
        t = start_ms + rng.randrange(0, 20 * DAY)
        while t < start_ms + (SPAN_DAYS - 2) * DAY:
            out.append(event("subscription_started", user, t, plan="pro", amount=20.0))
            t += rng.choice((HOUR, 3 * DAY, 12 * DAY, 40 * DAY))
            if t >= start_ms + (SPAN_DAYS - 2) * DAY:
                break
            out.append(event("subscription_cancelled", user, t, plan="pro"))
            out.append(event("purchase", user, t + HOUR, amount=round(rng.uniform(5, 60), 2)))
            t += rng.choice((2 * HOUR, 5 * DAY, 30 * DAY))
    return out


async def test_calendar_periods_match_the_batch_reference(settings: Settings) -> None:
    s = settings.with_overrides(
        timezone="America/New_York", week_start="sun", allowed_lateness_seconds=3600
    )
    start_ms = (int(time.time() * 1000) // DAY - SPAN_DAYS - 2) * DAY
    sim = Simulator(SimulationConfig(seed=5, users=20, start_ms=start_ms, activity=0.2))
    events = []
    for ev in sim.events():
        if ev.ts_ms > start_ms + SPAN_DAYS * DAY:
            break
        events.append(ev.event)
    events += churning_customers(start_ms, random.Random(7))
    events.sort(key=lambda e: e["ts"])  # in event time: nothing is late
    async with EngineHarness(s):
        await publish_events(s, events)
        await wait_caught_up(s, timeout=120)

    ref = Reference.build(events, s)
    fam = ref.families
    assert fam is not None
    assert len(ref.windows("month")) >= 4 and len(ref.windows("quarter")) >= 2
    assert len(ref.windows("week")) >= 17
    months = ref.windows("month")
    # the periods are not sums of days: some customer is lost in a month they were in at its
    # start and back before its end, and some user is active on several days of a month
    assert any(fam.value("churn_rate", "month", m, {}) for m in months)
    ends = [*months[1:], 2**40]
    daily_sums = [
        sum(ref.value("active_users", "day", d, {}) or 0 for d in ref.windows("day") if m <= d < e)
        for m, e in zip(months, ends, strict=True)
    ]
    monthly = [ref.value("active_users", "month", m, {}) or 0 for m in months]
    assert any(n < daily for n, daily in zip(monthly, daily_sums, strict=True))
    # days are compared by every other stream-equals-batch test
    problems = await compare_all(s, ref, granularities=("week", "month", "quarter"))
    assert not problems, "\n".join(problems[:20])
