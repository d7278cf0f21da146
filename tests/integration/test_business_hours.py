"""Business-hours ticket times on the real engine (Tansu, Redis), against the batch reference.

Support traffic from the simulator plus hand-made lifecycles runs over a Friday-to-Tuesday span
that holds the spring-forward Sunday of the schedule's zone (Europe/Berlin, 2026-03-29) and a
holiday (Monday), while windows are cut in another zone (America/New_York): reply and resolution
times then cross the weekend, the DST shift, the holiday and lunch breaks. Events arrive out of
order within a 10-minute lateness and a worker restart in the middle proves the open tickets
live in Redis. Every ticket metric — the business ones included — is compared over hour and day
windows and every channel and priority with tests/support/families_reference.py, which counts
business time minute by minute; the Prometheus histograms are checked against it too.
"""

from __future__ import annotations

import random
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stream.config.settings import BusinessHoursSettings, Settings
from stream.config.wiring import build_keys, metric_options
from stream.contract.types import Family
from stream.engine import store
from stream.engine.windows import Windows
from stream.infra.connections import redis_target
from stream.metrics.catalog import CATALOG
from stream.metrics.reader import QueryError, Reader
from stream.metrics.spec import MetricOptions
from stream.serving.exporter import BusinessExporter
from stream.serving.query import run_query
from stream.tools.simulate import DAY, HOUR, MINUTE, SimulationConfig, Simulator
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference, drop_late

pytestmark = pytest.mark.integration

LATENESS_S = 600
BERLIN = ZoneInfo("Europe/Berlin")
START_MS = 1_774_569_600_000  # Friday 2026-03-27T00:00Z
HOURS = BusinessHoursSettings(
    enabled=True,
    timezone="Europe/Berlin",
    schedule={
        "mon": ["09:00-12:30", "13:30-17:00"],
        "tue": ["09:00-12:30", "13:30-17:00"],
        "wed": ["09:00-12:30", "13:30-17:00"],
        "thu": ["09:00-12:30", "13:30-17:00"],
        "fri": ["09:00-12:30", "13:30-17:00"],
        "sat": ["10:00-14:00"],
        "sun": ["03:00-05:00"],  # starts right after the shift (02:00 → 03:00)
    },
    holidays=[date(2026, 3, 30)],
)
TICKET_METRICS = [name for name, spec in CATALOG.items() if spec.families == ("support",)]


def berlin(local: str) -> int:
    """Epoch ms of a Berlin wall-clock time, ``2026-03-27T16:30``."""
    return int(datetime.fromisoformat(local).replace(tzinfo=BERLIN).timestamp() * 1000)


def handmade() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Lifecycles across the weekend, the shift and the holiday, and their first-reply business
    times worked out by hand (in ms) to anchor the reference itself."""
    events: list[dict[str, Any]] = []
    frt: dict[str, int] = {}

    def ticket(tid: str, user: str, steps: list[tuple[str, str, dict[str, Any]]]) -> None:
        for kind, local, props in steps:
            events.append(event("ticket_" + kind, user, berlin(local), ticket_id=tid, **props))

    agent = {"author": "agent"}
    # Friday 16:30 → Saturday 11:00: 0.5 h Friday + 1 h Saturday; solved on Tuesday after the
    # holiday Monday and the DST Sunday.
    ticket("weekend", "u-bh-1", [
        ("created", "2026-03-27T16:30", {"channel": "email", "priority": "high"}),
        ("replied", "2026-03-27T18:00", {"author": "bot"}),
        ("replied", "2026-03-28T11:00", agent),
        ("solved", "2026-03-31T10:00", {}),
    ])  # fmt: skip
    frt["weekend"] = 90 * MINUTE
    # Saturday 13:00 → Sunday 03:30 CEST: 1 h Saturday + 0.5 h Sunday (03:00 exists only in
    # summer time, right after the shift).
    ticket("dst", "u-bh-2", [
        ("created", "2026-03-28T13:00", {"channel": "chat"}),
        ("replied", "2026-03-29T03:30", agent),
        ("solved", "2026-03-29T04:30", {}),
    ])  # fmt: skip
    frt["dst"] = 90 * MINUTE
    # Reopened and re-solved: the full resolution time moves from Friday to Tuesday.
    ticket("reopened", "u-bh-3", [
        ("created", "2026-03-27T09:00", {"channel": "web", "priority": "low"}),
        ("replied", "2026-03-27T12:00", agent),
        ("solved", "2026-03-27T14:00", {}),
        ("reopened", "2026-03-28T09:00", {}),
        ("solved", "2026-03-31T09:30", {}),
    ])  # fmt: skip
    frt["reopened"] = 3 * HOUR
    # Created by an agent over lunch: the second public agent reply counts, lunch does not.
    ticket("by-agent", "u-bh-4", [
        ("created", "2026-03-27T12:00", {"channel": "phone", "author": "agent"}),
        ("replied", "2026-03-27T12:01", agent),
        ("replied", "2026-03-27T14:00", agent),
        ("solved", "2026-03-27T15:00", {}),
    ])  # fmt: skip
    frt["by-agent"] = 60 * MINUTE
    # Entirely on the holiday: calendar time, no business time.
    ticket("holiday", "u-bh-5", [
        ("created", "2026-03-30T10:00", {"channel": "email"}),
        ("replied", "2026-03-30T11:00", agent),
        ("solved", "2026-03-30T12:00", {}),
    ])  # fmt: skip
    frt["holiday"] = 0
    return events, frt


def support_stream(seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    sim = Simulator(SimulationConfig(seed=seed, users=300, start_ms=START_MS, activity=3.0))
    events = []
    for ev in sim.events():
        if ev.ts_ms > START_MS + 4 * DAY + 12 * HOUR:
            break
        if ev.family == Family.SUPPORT:
            events.append(ev.event)
    extra, frt = handmade()
    events += extra
    events.sort(key=lambda e: e["ts"])
    rng = random.Random(seed)
    # Shuffled within 8 minutes: replies and solves often arrive before their creation.
    return sorted(events, key=lambda e: e["ts"] + rng.randrange(0, 8 * MINUTE)), frt


async def test_business_hours_match_the_batch_reference(settings: Settings) -> None:
    s = settings.with_overrides(
        allowed_lateness_seconds=LATENESS_S,
        timezone="America/New_York",
        support_business_hours=HOURS,
    )
    events, hand_frt = support_stream(seed=7)
    on_time, late = drop_late(events, s.topic_partitions, LATENESS_S * 1000)
    assert not late
    half = len(events) // 2
    async with EngineHarness(s):
        await publish_events(s, events[:half])
        await wait_caught_up(s)
    async with EngineHarness(s):  # a new worker: open tickets live in Redis
        await publish_events(s, events[half:])
        await wait_caught_up(s)

    ref = Reference.build(on_time, s)
    fam = ref.families
    assert fam is not None
    facts = fam.ticket_facts
    # The reference agrees with the hand-worked first replies...
    by_reply = {f.ts: f.duration_ms for f in facts if f.measure == "frt_bh"}
    for e in on_time:
        tid = e["properties"]["ticket_id"]
        if tid in hand_frt and e["type"] == "ticket_replied" and e["ts"] in by_reply:
            assert by_reply.pop(e["ts"]) == hand_frt.pop(tid), tid
    assert not hand_frt
    # ... and the traffic exercises business time: below calendar time, and sometimes zero.
    business = [f for f in facts if f.measure.endswith("_bh")]
    assert {f.measure for f in business} == {"frt_bh", "fres_bh", "full_bh"}
    calendar = {(f.measure, f.ts, f.channel): f.duration_ms for f in facts}
    assert any(f.duration_ms == 0 for f in business)
    assert any(0 < (f.duration_ms or 0) < (calendar[(f.measure[:-3], f.ts, f.channel)] or 0)
               for f in business)  # fmt: skip

    problems = await compare_all(s, ref, ("hour", "day"), TICKET_METRICS)
    assert not problems, "\n".join(problems[:20])

    client = store.connect(redis_target(s))
    reader = Reader(client, build_keys(s))
    windows = Windows(s.zone)
    try:
        # Prometheus, on Tuesday: the histograms of the "previous_day" (Monday in New York).
        now = berlin("2026-03-31T18:00") / 1000
        day = windows.start_of("day", now)
        previous = windows.previous_days(day, 2)[-1]
        options = metric_options(s)
        exporter = BusinessExporter(reader, windows, s.granularities, s.max_label_values, options)
        exported = {f.name: f for f in await exporter.families(now=now)}
        for metric, family in (
            ("first_reply_time_business_avg", "engagement_ticket_first_reply_business_seconds"),
            ("full_resolution_time_business_avg",
             "engagement_ticket_full_resolution_business_seconds"),
        ):  # fmt: skip
            samples = {
                x.name[len(family) :]: x.value
                for x in exported[family].samples
                if x.labels.get("window") == "previous_day" and "le" not in x.labels
            }
            want = ref.value(metric, "day", previous, {})
            assert want is not None, metric
            assert samples["_gsum"] / samples["_gcount"] == pytest.approx(want)
        # Without the mode the business series and metrics do not exist.
        plain = BusinessExporter(
            reader, windows, s.granularities, s.max_label_values, MetricOptions()
        )
        names = {f.name for f in await plain.families(now=now)}
        assert "engagement_ticket_first_reply_seconds" in names
        assert not any("business" in n for n in names)
        with pytest.raises(QueryError, match="business-hours mode"):
            await run_query("first_reply_time_business_avg", {}, reader, windows, MetricOptions())
    finally:
        await client.aclose()
