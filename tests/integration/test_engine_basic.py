"""The engine against the real broker and Redis, on small hand-made streams."""

from __future__ import annotations

import time

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys, metric_options
from stream.engine import store
from stream.engine.windows import Windows
from stream.infra.connections import redis_target
from stream.metrics.reader import QueryError, Reader
from stream.serving.exporter import BusinessExporter
from stream.serving.query import run_query
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def small_stream() -> list[dict[str, object]]:
    evs = []
    for i in range(40):
        user = f"u{i % 13}"
        ts = T0 + i * 97_000
        evs.append(event("page_view", user, ts, page="/pricing" if i % 3 else "/home"))
        evs.append(event("impression", user, ts + 1000, campaign="spring", placement="top"))
        if i % 4 == 0:
            evs.append(event("click", user, ts + 2000, campaign="spring", placement="top"))
        if i % 7 == 0:  # orphan: no impression of this campaign+placement that day
            evs.append(event("click", user, ts + 3000, campaign="winter", placement="side"))
        if i % 5 == 0:
            evs.append(event("feature_used", user, ts + 4000, feature="export"))
        if i % 9 == 0:
            evs.append(event("conversion", user, ts + 5000, campaign="spring"))
        evs.append(event("like", user, ts + 6000, platform="twitter", post_id="p1"))
    # a second day, so WAU/MAU span days
    evs.append(event("page_view", "u99", T0 + 86_400_000 + 5, page="/"))
    return evs


async def test_small_stream_matches_reference(settings: Settings) -> None:
    events = small_stream()
    async with EngineHarness(settings):
        await publish_events(settings, events)
        await wait_caught_up(settings)
    ref = Reference.build(events, settings)
    assert ref.value("orphan_clicks", "day", ref.windows("day")[0], {}) > 0
    problems = await compare_all(settings, ref)
    assert not problems, "\n".join(problems[:20])


async def test_without_sessions_and_scores_every_other_metric_still_matches(
    settings: Settings,
) -> None:
    """Sessions and scores switched off: the engine's own metrics are unchanged, no per-user
    state is kept or relayed, and asking for what is not kept says so instead of a null."""
    s = settings.with_per_user_states(sessions=False, score=False)
    events = small_stream()
    async with EngineHarness(s):
        await publish_events(s, events)
        await wait_caught_up(s)
    ref = Reference.build(events, s)
    problems = await compare_all(s, ref)
    assert not problems, "\n".join(problems[:20])

    client = store.connect(redis_target(s))
    try:
        written = [k.decode() async for k in client.scan_iter(build_keys(s).scan_pattern())]
        assert any(":c:" in k for k in written)  # the counters are there...
        per_user = [k for k in written if any(f":{kind}:" in k for kind in ("k", "kd", "ob", "z"))]
        assert not per_user  # ...but no keyed state, due set, outbox or at-risk ranking
        reader = Reader(client, build_keys(s))
        windows = Windows(s.zone)
        options = metric_options(s)
        with pytest.raises(QueryError, match="sessions are off"):
            await run_query("sessions", {"granularity": "day"}, reader, windows, options)
        exporter = BusinessExporter(reader, windows, s.granularities, s.max_label_values, options)
        exported = {f.name for f in await exporter.families(now=time.time())}
        assert "engagement_page_views" in exported
        assert not {n for n in exported if "session" in n or "score" in n}
    finally:
        await client.aclose()
