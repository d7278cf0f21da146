"""Redis restarted empty under a running worker (issue 19): every partition it owns is rebuilt
from the log, idle ones included, without a rebalance and without new records."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream.config.settings import Settings
from stream.engine import store
from tests.support.compare import compare_all
from tests.support.harness import (
    EngineHarness,
    counter_total,
    publish_events,
    simulated_day,
    wait_caught_up,
    wipe_store,
)
from tests.support.reference import FAMILY, Reference, partition_of

pytestmark = pytest.mark.integration


async def test_a_store_restarted_empty_is_rebuilt_on_idle_partitions_too(
    settings: Settings,
) -> None:
    events = simulated_day(seed=9, users=60)
    assert {e["type"] for e in events} & {"ticket_created", "purchase", "like", "nps_response"}
    async with EngineHarness(settings) as harness:
        assert harness.engine is not None
        await publish_events(settings, events)
        await wait_caught_up(settings)
        ref = Reference.build(events, settings)
        assert not await compare_all(settings, ref, ("day",))

        wipe_store(settings)
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
