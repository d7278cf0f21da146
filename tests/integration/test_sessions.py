"""Sessions on the real engine: out of order, across midnight and a DST change, late after close.

The worker's session metrics are compared with the reference's batch sessionizer over every
window, platform and channel; the allowed lateness is shortened to 10 minutes so that sessions
close within a short stream (the rule is the same with the 24 h default).
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys, metric_options
from stream.engine import store
from stream.engine.windows import Windows
from stream.infra.connections import redis_target
from stream.metrics.reader import Reader
from stream.serving.exporter import BusinessExporter
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, read_dlq, wait_caught_up
from tests.support.reference import Reference, drop_late

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
MIN = 60_000
# 2026-10-31 22:00 New York: the stream runs across midnight into the 25-hour day of Nov 1st
# (clocks fall back from 02:00 EDT to 01:00 EST).
T0 = int(datetime(2026, 10, 31, 22, 0, tzinfo=NY).timestamp() * 1000)


def session_stream(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(30):
        user = f"user-{u}"
        ts = T0 + rng.randrange(0, 60 * MIN)
        platform = rng.choice(["web", "ios", "android", "tv", None])
        channel = rng.choice(["organic", "paid", "email", "carrier-pigeon", None])
        while ts < T0 + 6 * 60 * MIN:
            kind = rng.choices(
                ["page_view", "screen_view", "click", "conversion", "feature_used", "impression"],
                [8, 2, 2, 1, 1, 2],
            )[0]
            props: dict[str, Any] = {}
            if platform is not None:
                props["platform"] = platform
            if channel is not None:
                props["channel"] = channel
            if kind == "feature_used":
                props["feature"] = "export"
            events.append(event(kind, user, ts, **props))
            # mostly short gaps; sometimes a pause long enough to end the session
            ts += rng.choice([0, 2_000, 9_000, 45_000, 4 * MIN, 29 * MIN, 31 * MIN, 70 * MIN])
    events.sort(key=lambda e: e["ts"])
    # Arrival order: displaced by up to 8 minutes (inside the 10-minute lateness) ...
    arrival = sorted(events, key=lambda e: e["ts"] + rng.randrange(0, 8 * MIN))
    # ... plus a few events that arrive after their session closed: late, to the DLQ.
    for i in range(5):
        stale = dict(arrival[i * 7])
        stale["event_id"] = f"stale-{i}"
        arrival.append(stale)
    return arrival


async def test_sessions_match_the_batch_sessionizer(settings: Settings) -> None:
    s = settings.with_overrides(timezone="America/New_York", allowed_lateness_seconds=600)
    events = session_stream(seed=3)
    on_time, late = drop_late(events, s.topic_partitions, 600_000)
    assert len(late) >= 5
    half = len(events) // 2
    async with EngineHarness(s):
        await publish_events(s, events[:half])
        await wait_caught_up(s)
    async with EngineHarness(s):  # a new worker mid-session: open sessions live in Redis
        await publish_events(s, events[half:])
        await wait_caught_up(s)
        dlq = await read_dlq(s, expected=len(late))
    assert sorted(r["reason"] for r in dlq) == ["late"] * len(late)

    ref = Reference.build(on_time, s)
    assert len(ref.sessions) > 100
    assert {x.platform for x in ref.sessions} >= {"web", "other", "(not set)"}
    problems = await compare_all(s, ref, granularities=("hour", "day"))
    assert not problems, "\n".join(problems[:20])


async def test_ua_bounce_definition(settings: Settings) -> None:
    s = settings.with_overrides(allowed_lateness_seconds=60, bounce_definition="ua")
    t = 1_767_225_600_000
    events = [
        event("page_view", "a", t),
        event("click", "a", t + 20_000),  # engaged (20 s) but a single page view: UA bounce
        event("page_view", "b", t),
        event("page_view", "b", t + 1_000),  # two pages: not a bounce either way
        # a return 3 h later moves each partition's watermark past the first sessions
        event("page_view", "a", t + 3 * 3_600_000),
        event("page_view", "b", t + 3 * 3_600_000),
    ]
    async with EngineHarness(s):
        await publish_events(s, events)
        await wait_caught_up(s)
    ref = Reference.build(events, s)
    assert ref.value("bounce_rate", "day", ref.windows("day")[0], {}) == 50.0
    problems = await compare_all(s, ref)
    assert not problems, "\n".join(problems[:20])

    # Prometheus: the day after, the sessions sit in the previous_day window.
    client = store.connect(redis_target(s))
    try:
        exporter = BusinessExporter(
            Reader(client, build_keys(s)),
            Windows(s.zone),
            s.granularities,
            s.max_label_values,
            metric_options(s),
        )
        families = {f.name: f for f in await exporter.families(now=t / 1000 + 86_400)}
    finally:
        await client.aclose()

    def sample(family: str, suffix: str = "") -> float:
        (value,) = [
            x.value
            for x in families[family].samples
            if x.labels.get("window") == "previous_day" and x.name == family + suffix
            and x.labels.get("le", "+Inf") == "+Inf"
        ]  # fmt: skip
        return value

    assert sample("engagement_sessions") == 2
    assert sample("engagement_session_bounce_ratio") == 0.5
    assert sample("engagement_session_duration_seconds", "_gcount") == 2
    assert sample("engagement_session_duration_seconds", "_gsum") == 21.0
