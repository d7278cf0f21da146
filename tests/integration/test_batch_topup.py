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


@pytest.fixture
def busy_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that takes its time: each round trip 600 ms more, longer than a fetch's long poll
    (aiokafka's ``fetch_max_wait_ms``, 500), so that records arrive meanwhile."""
    real = store.apply_then_read

    async def slow(client: Any, calls: Any, reads: Any) -> Any:
        await asyncio.sleep(0.6)
        return await real(client, calls, reads)

    monkeypatch.setattr(store, "apply_then_read", slow)


async def _publish_rounds(
    settings: Settings, rounds: range, events: list[dict[str, object]]
) -> None:
    """A round every ~50 ms: records keep arriving while Redis works."""
    async with BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for round_ in rounds:
            for e in trickle(round_):
                await pub.send(topic_for(settings, e), str(e["user_id"]).encode(), orjson.dumps(e))
                events.append(e)
            await pub.flush()
            await asyncio.sleep(0.05)


@pytest.mark.usefixtures("busy_redis")
async def test_records_folded_while_redis_is_busy_count_once(settings: Settings) -> None:
    await ensure_topics(settings)
    events: list[dict[str, object]] = []
    harness = EngineHarness(settings)
    async with harness:
        await _publish_rounds(settings, range(60), events)
        await wait_caught_up(settings, timeout=120)
    assert harness.metrics.batch_topups._value.get() > 0  # the path under test ran
    problems = await compare_all(settings, Reference.build(events, settings))
    assert not problems, "\n".join(problems[:20])


@pytest.mark.usefixtures("busy_redis")
async def test_a_rebalance_while_batches_are_topped_up_neither_stalls_nor_double_counts(
    settings: Settings,
) -> None:
    """A second worker joins while the first tops its batches up: the rebalance's revocation
    waits for the batch's lock, so a top-up that fetched during it would wait for the new
    assignment forever (getmany waits for it). The batch loop stops topping up instead."""
    await ensure_topics(settings)
    events: list[dict[str, object]] = []
    first = EngineHarness(settings)
    async with first:
        publishing = asyncio.ensure_future(_publish_rounds(settings, range(120), events))
        for _ in range(500):  # until it tops up a batch (asserted below), 10 s at most
            if first.metrics.batch_topups._value.get() > 0:
                break
            await asyncio.sleep(0.02)
        assert first.metrics.batch_topups._value.get() > 0
        async with EngineHarness(settings):  # joins the group: partitions move mid-stream
            await publishing
            await wait_caught_up(settings, timeout=120)
    problems = await compare_all(settings, Reference.build(events, settings))
    assert not problems, "\n".join(problems[:20])
