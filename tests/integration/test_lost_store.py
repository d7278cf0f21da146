"""Redis restarted empty under a running worker (issue 19): every partition it owns is rebuilt
from the log, idle ones included, without a rebalance and without new records."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from stream.config.settings import Settings
from stream.engine import store
from stream.tools.simulate import DAY, SimulationConfig, Simulator
from tests.support.compare import compare_all
from tests.support.harness import EngineHarness, counter_total, publish_events, wait_caught_up
from tests.support.reference import FAMILY, Reference, partition_of

pytestmark = pytest.mark.integration


def wipe(settings: Settings) -> None:
    """What a Redis restart without persistence leaves: no keys, no functions."""
    if settings.redis_cluster:
        cluster = redis.RedisCluster.from_url(settings.redis_url)
        try:
            for node in cluster.get_primaries():
                cluster.execute_command("FLUSHALL", target_nodes=node)
                cluster.execute_command("FUNCTION", "FLUSH", target_nodes=node)
        finally:
            cluster.close()
        return
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.flushall()
        client.function_flush()
    finally:
        client.close()


async def test_a_store_restarted_empty_is_rebuilt_on_idle_partitions_too(
    settings: Settings,
) -> None:
    start_ms = (int(time.time() * 1000) // DAY - 2) * DAY
    sim = Simulator(SimulationConfig(seed=9, users=60, start_ms=start_ms, activity=1.0))
    events = []
    for ev in sim.events():  # an endless stream: cut after a day
        if ev.ts_ms >= start_ms + DAY:
            break
        events.append(ev.event)
    assert {e["type"] for e in events} & {"ticket_created", "purchase", "like", "nps_response"}
    async with EngineHarness(settings) as harness:
        assert harness.engine is not None
        await publish_events(settings, events)
        await wait_caught_up(settings)
        ref = Reference.build(events, settings)
        assert not await compare_all(settings, ref, ("day",))

        wipe(settings)
        # nothing new is published: every partition is idle
        deadline = time.monotonic() + 60
        problems = ["not checked"]
        while problems and time.monotonic() < deadline:
            await asyncio.sleep(2)
            if harness.engine.rebuilding:
                continue
            try:
                problems = await compare_all(settings, ref, ("day",))
            except Exception as exc:  # the shard registry may not be back yet
                problems = [repr(exc)]
        assert not problems, problems[:10]
        lost = counter_total(harness.metrics, "stream_store_lost_partitions")
        # every partition that had applied records was noticed and rebuilt, idle or not
        written = {(FAMILY[e["type"]], partition_of(e["user_id"], settings.topic_partitions))
                   for e in events}  # fmt: skip
        assert lost == len(written) > 5
        assert not harness.engine.rebuilding
        # the placement marker is back, so that workers started later accept the store
        placement = await store.stored_placement(harness.engine.redis, harness.engine.keys)
        assert placement is harness.engine.keys.placement
