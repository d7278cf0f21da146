"""A batch topped up while Redis is busy: records that arrive while the pipeline in flight is
still running are folded into the batch (instead of the worker waiting idle), and every metric
still equals the batch reference -- sessions, scores and ad pairs included, whose folds then
continue across fetches within one batch."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from stream.config.settings import Settings
from stream.engine import store
from stream.infra.topics import ensure_topics
from stream.tools.publish import BatchPublisher
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, topic_for, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def trickle(round_: int) -> list[dict[str, object]]:
    """One round of a steady stream: views, ads, features and conversions of 17 users."""
    evs: list[dict[str, object]] = []
    for i in range(60):
        user = f"u{(i * 7 + round_) % 17}"
        ts = T0 + (round_ * 60 + i) * 41_000
        evs.append(event("page_view", user, ts, page="/pricing" if i % 3 else "/home"))
        evs.append(event("impression", user, ts + 500, campaign="spring", placement="top"))
        if i % 4 == 0:
            evs.append(event("click", user, ts + 900, campaign="spring", placement="top"))
        if i % 5 == 0:
            evs.append(event("feature_used", user, ts + 1200, feature="export"))
        if i % 11 == 0:
            evs.append(event("conversion", user, ts + 1500, campaign="spring"))
    return evs


async def test_records_folded_while_redis_is_busy_count_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.apply_then_read

    async def busy_redis(client: Any, calls: Any, reads: Any) -> Any:
        await asyncio.sleep(0.25)  # a Redis that takes its time: records arrive meanwhile
        return await real(client, calls, reads)

    monkeypatch.setattr(store, "apply_then_read", busy_redis)
    settings = settings.with_overrides(batch_max_records=2_000)
    await ensure_topics(settings)
    events: list[dict[str, object]] = []
    harness = EngineHarness(settings)
    async with harness, BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for round_ in range(40):  # a round every ~50 ms: records keep arriving while Redis works
            for e in trickle(round_):
                await pub.send(topic_for(settings, e), str(e["user_id"]).encode(), orjson.dumps(e))
                events.append(e)
            await pub.flush()
            await asyncio.sleep(0.05)
        await wait_caught_up(settings, timeout=120)
    assert harness.metrics.batch_topups._value.get() > 0  # the path under test ran
    problems = await compare_all(settings, Reference.build(events, settings))
    assert not problems, "\n".join(problems[:20])
