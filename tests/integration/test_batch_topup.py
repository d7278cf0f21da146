"""A batch topped up while Redis is busy: records that arrive while the pipeline in flight is
still running are folded into the batch (instead of the worker waiting idle), and every metric
still equals the batch reference -- sessions, scores and ad pairs included, whose folds then
continue across fetches within one batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from stream.config import wiring
from stream.config.settings import Settings
from stream.engine import store
from stream.infra.topics import ensure_topics
from stream.tools.publish import BatchPublisher
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, counter_total, topic_for, wait_caught_up
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


class AppsPublishingWhileRedisWorks:
    """A Redis round trip that takes its time, in the middle of which the apps publish the next
    round of events: records arrive while the pipeline is in flight, after the worker folded
    the batch it had."""

    def __init__(self, settings: Settings, rounds: int) -> None:
        self.settings = settings
        self.rounds = iter(range(rounds))
        self.events: list[dict[str, object]] = []
        self.publisher = BatchPublisher(settings.kafka_bootstrap_servers)
        self.real = store.apply_then_read
        self.all_published = asyncio.Event()

    async def publish_next(self) -> None:
        round_ = next(self.rounds, None)
        if round_ is None:
            self.all_published.set()
            return
        for e in trickle(round_):
            topic = topic_for(self.settings, e)
            await self.publisher.send(topic, str(e["user_id"]).encode(), orjson.dumps(e))
            self.events.append(e)
        await self.publisher.flush()

    async def apply_then_read(self, client: Any, calls: Any, reads: Any) -> Any:
        await asyncio.sleep(0.1)  # the worker has folded what it fetched by now
        await self.publish_next()
        await asyncio.sleep(0.25)
        return await self.real(client, calls, reads)


@pytest.fixture
async def apps(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppsPublishingWhileRedisWorks]:
    await ensure_topics(settings)
    apps = AppsPublishingWhileRedisWorks(settings, rounds=16)
    # Fetches answer within 20 ms (a broker may hold a fetch for fetch_max_wait_ms, 500 by
    # default, before it answers with records that arrived meanwhile).
    real_kwargs = wiring.kafka_client_kwargs
    monkeypatch.setattr(
        wiring, "kafka_client_kwargs", lambda s: {**real_kwargs(s), "fetch_max_wait_ms": 20}
    )
    async with apps.publisher:
        monkeypatch.setattr(store, "apply_then_read", apps.apply_then_read)
        yield apps


async def test_records_folded_while_redis_is_busy_count_once(
    settings: Settings, apps: AppsPublishingWhileRedisWorks
) -> None:
    harness = EngineHarness(settings)
    async with harness:
        await apps.publish_next()  # the rest follow, one round per Redis round trip
        await asyncio.wait_for(apps.all_published.wait(), 60)
        await wait_caught_up(settings, timeout=120)
    assert counter_total(harness.metrics, "stream_batch_topups") > 0  # the path under test ran
    problems = await compare_all(settings, Reference.build(apps.events, settings))
    assert not problems, "\n".join(problems[:20])


async def test_a_rebalance_while_batches_are_topped_up_neither_stalls_nor_double_counts(
    settings: Settings, apps: AppsPublishingWhileRedisWorks
) -> None:
    """A second worker joins while the first tops its batches up: the rebalance's revocation
    waits for the batch's lock, so a top-up that fetched during it would wait for the new
    assignment forever (getmany waits for it). The batch loop stops topping up instead."""
    first = EngineHarness(settings)
    async with first:
        await apps.publish_next()
        for _ in range(500):  # until it tops up a batch (asserted below), 10 s at most
            if counter_total(first.metrics, "stream_batch_topups") > 0:
                break
            await asyncio.sleep(0.02)
        assert counter_total(first.metrics, "stream_batch_topups") > 0
        async with EngineHarness(settings):  # joins the group: partitions move mid-stream
            await asyncio.wait_for(apps.all_published.wait(), 60)
            await wait_caught_up(settings, timeout=120)
    problems = await compare_all(settings, Reference.build(apps.events, settings))
    assert not problems, "\n".join(problems[:20])
