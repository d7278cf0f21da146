"""Moving a store between placements (``stream store migrate``) on the real stack.

A store written with the plain ``{family.partition}`` tags (every release before placements) is
refused by a worker set to ``spread``; a dry run writes nothing; the move renames every key
without losing its time to live; a worker on the new placement resumes from the moved offsets
(nothing re-applied, nothing lost) and every metric still equals the batch reference over all
the events, those before and after the move.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.engine import store
from stream.engine.placement import Placement
from stream.infra.connections import redis_target
from stream.tools.placement_migration import migrate_placement, renamed
from stream.tools.simulate import HOUR, SimulationConfig, Simulator, take
from tests.support.compare import compare_all
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


def mixed_stream(now_ms: int) -> list[dict[str, Any]]:
    sim = Simulator(SimulationConfig(seed=5, users=120, start_ms=now_ms - 20 * HOUR, activity=4))
    return [e.event for e in take(sim.events(), 4000) if e.ts_ms < now_ms]


async def stored_keys(client: Any, prefix: str) -> dict[str, int]:
    """Every key of the deployment and its time to live (-1: none)."""
    out = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        out[raw.decode()] = await client.pttl(raw)
    return out


async def test_partition_store_moves_to_spread_and_keeps_counting(settings: Settings) -> None:
    old = settings.with_overrides(redis_placement=Placement.PARTITION)
    new = settings.with_overrides(redis_placement=Placement.SPREAD)
    events = mixed_stream(int(time.time() * 1000))
    half = len(events) // 2
    async with EngineHarness(old):
        await publish_events(old, events[:half])
        await wait_caught_up(old)

    client = store.connect(redis_target(settings))
    try:
        assert await store.stored_placement(client, build_keys(old)) is Placement.PARTITION
        with pytest.raises(store.PlacementMismatch, match="stream store migrate --to spread"):
            await store.check_placement(client, build_keys(new))
        engine = EngineHarness(new)
        with pytest.raises(store.PlacementMismatch):  # the worker itself refuses to start
            await engine.start()
        await engine.stop()

        before = await stored_keys(client, settings.key_prefix)
        dry = await migrate_placement(client, settings.key_prefix, Placement.SPREAD, apply=False)
        assert dry.source is Placement.PARTITION and dry.copied == len(before) - 2  # shards, marker
        assert (await stored_keys(client, settings.key_prefix)).keys() == before.keys()  # unwritten

        moved = await migrate_placement(client, settings.key_prefix, Placement.SPREAD, apply=True)
        assert moved.copied == dry.copied
        after = await stored_keys(client, settings.key_prefix)
        keys_new, keys_old = build_keys(new), build_keys(old)
        shards = [s.decode() for s in await client.smembers(keys_old.shards)]
        expected = {}
        for key, ttl in before.items():
            shard = next((s for s in shards if "{" + keys_old.tag(s) + "}" in key), None)
            if shard is not None:
                key = renamed(key, keys_old.tag(shard), keys_new.tag(shard))
            expected[key] = ttl
        assert after.keys() == expected.keys()
        for key, ttl in after.items():  # the time to live moved with the key (give or take)
            assert (ttl == -1) == (expected[key] == -1) and abs(ttl - expected[key]) < 60_000
        assert any(ttl > 0 for ttl in after.values())

        again = await migrate_placement(client, settings.key_prefix, Placement.SPREAD, apply=True)
        assert (again.copied, again.deleted) == (0, 0) and "nothing to move" in again.notes[0]
    finally:
        await client.aclose()

    async with EngineHarness(new):
        await publish_events(new, events[half:])
        await wait_caught_up(new)
    problems = await compare_all(new, Reference.build(events, new), granularities=("hour",))
    assert not problems, "\n".join(problems[:20])
