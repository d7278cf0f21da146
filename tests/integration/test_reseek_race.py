"""Records fetched just before the store watch re-seeks their partition (Redis lost its data)
are not folded with the partition's new state: the re-read brings them again, once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stream.config.settings import Settings
from stream.contract.types import Reason
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
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


async def test_records_fetched_before_a_reseek_are_read_again_not_folded(
    settings: Settings,
) -> None:
    events = simulated_day(seed=4, users=40)
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    async with EngineHarness(settings) as harness:
        engine = harness.engine
        assert engine is not None and engine._consumer is not None
        await publish_events(settings, first)
        await wait_caught_up(settings)

        # The next fetch that returns records is followed, after it returned and before its
        # batch gets the lock, by what the store watch does on a Redis that restarted empty:
        # under the lock, drain, re-seek every partition to "nothing stored", restore the
        # placement marker and the shard registry.
        consumer = engine._consumer
        fetch = consumer.getmany
        reseeked = asyncio.Event()
        watch: list[asyncio.Task[None]] = []

        async def lose_the_store(holding: asyncio.Event) -> None:
            async with engine._lock:
                holding.set()
                await asyncio.sleep(0.05)  # the fetch's batch now waits for the lock
                await engine._drain()
                wipe_store(settings, functions=False)  # the watch's re-seek is the point
                for tp, state in list(engine.partitions.items()):
                    await engine._seek_to(tp, state.shard, store.PartitionProgress(-1, 0))
                await store.check_placement(engine.redis, engine.keys)
                shards = [s.shard for s in engine.partitions.values()]
                await store.register_shards(engine.redis, engine.keys, shards)
            reseeked.set()

        async def getmany_then_lose_the_store(*args: Any, **kwargs: Any) -> Any:
            batch = await fetch(*args, **kwargs)
            if batch and not watch:
                holding = asyncio.Event()
                watch.append(asyncio.create_task(lose_the_store(holding)))
                await holding.wait()
            return batch

        consumer.getmany = getmany_then_lose_the_store  # type: ignore[method-assign]
        await publish_events(settings, second)
        await asyncio.wait_for(reseeked.wait(), 30)
        await watch[0]
        await wait_caught_up(settings)

        ref = Reference.build(events, settings)
        deadline = time.monotonic() + 60
        problems = ["not checked"]
        while problems and time.monotonic() < deadline:
            problems = await compare_all(settings, ref, ("day",))
            if problems:
                await asyncio.sleep(1)
        assert not problems, problems[:10]
        # Folded with the new state, the fetched records would have been admitted into its
        # fresh duplicate window and their re-read dead-lettered as duplicates (or, with the
        # window off, counted twice).
        duplicates = counter_total(
            harness.metrics, "stream_events_rejected", reason=Reason.DUPLICATE.value
        )
        assert duplicates == 0
