"""Exactly-once effects: the offset guard, replays, and a Redis failover that loses writes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context, build_keys, build_layout
from stream.engine import store
from stream.engine.deltas import build_call
from stream.engine.fold import fold_records
from stream.engine.windows import Windows
from tests.support.compare import compare_all
from tests.support.events import clickstream_mix, event
from tests.support.harness import EngineHarness, counter_total, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers: list[tuple[str, bytes | None]] = []


async def test_guard_refuses_replay_and_stale_writer(settings: Settings, redis_client: Any) -> None:
    import orjson

    await store.load_function(redis_client)
    windows = Windows(settings.zone)
    ctx = build_fold_context(settings, windows)
    layout = build_layout(settings, windows)
    now_ms = int(time.time() * 1000)
    recs = [
        Rec(i, orjson.dumps(event("page_view", "u1", now_ms - 1000 + i, page="/")))
        for i in range(5)
    ]
    fold = fold_records(recs, ctx, -1, now_ms)
    keys, argv = build_call(
        fold.deltas, layout, "clickstream.0", -1, 4, fold.max_ts, now_ms // 1000
    )
    call = store.PendingCall("clickstream.0", keys, argv)
    (first,) = await store.apply_calls(redis_client, [call])
    (again,) = await store.apply_calls(redis_client, [call])  # crash before commit -> replay
    assert first.applied and not again.applied
    assert again.stored == store.PartitionProgress(4, fold.max_ts)
    k = build_keys(settings)
    day = windows.start_of("day", now_ms / 1000)
    assert int(await redis_client.hget(k.counters("clickstream.0", "d", day), "pv")) == 5
    # a zombie that still believes the partition is at offset 2 is refused too
    keys2, argv2 = build_call(
        fold.deltas, layout, "clickstream.0", 2, 7, fold.max_ts, now_ms // 1000
    )
    (zombie,) = await store.apply_calls(
        redis_client, [store.PendingCall("clickstream.0", keys2, argv2)]
    )
    assert not zombie.applied
    assert int(await redis_client.hget(k.counters("clickstream.0", "d", day), "pv")) == 5


async def _snapshot(client: Any, prefix: str) -> dict[bytes, bytes]:
    return {key: await client.dump(key) async for key in client.scan_iter(f"{prefix}:*")}


async def _restore(client: Any, prefix: str, snap: dict[bytes, bytes]) -> None:
    async for key in client.scan_iter(f"{prefix}:*"):
        if key not in snap:
            await client.delete(key)
    for key, blob in snap.items():
        await client.restore(key, 0, blob, replace=True)


@pytest.mark.parametrize("batch_max_records", [None, 40], ids=["default-batches", "small-batches"])
async def test_failover_losing_writes_loses_no_events(
    settings: Settings, redis_client: Any, batch_max_records: int | None
) -> None:
    """With small batches, the refused apply comes back while the batches folded after it are
    in flight (their keyed reads sent, one held): those must be dropped and re-read too."""
    if batch_max_records is not None:
        settings = settings.with_overrides(batch_max_records=batch_max_records)
    t0 = int(time.time() * 1000) - 3_600_000
    part1, part2, part3 = (
        clickstream_mix(600, t0),
        clickstream_mix(600, t0 + 900_000),
        clickstream_mix(600, t0 + 1_800_000),
    )
    async with EngineHarness(settings) as harness:
        await publish_events(settings, part1)
        await wait_caught_up(settings)
        snap = await _snapshot(redis_client, settings.key_prefix)
        await publish_events(settings, part2)
        await wait_caught_up(settings)
        # A failover to a replica that had not received part 2's writes:
        await _restore(redis_client, settings.key_prefix, snap)
        await publish_events(settings, part3)
        await wait_caught_up(settings)
        refused = counter_total(harness.metrics, "stream_batches_refused")
        noticed = counter_total(harness.metrics, "stream_store_lost_partitions")
    # The engine noticed and re-seeked: either part 3's first apply was refused, or the store
    # watcher (every store_check_interval_s) saw the progress go back before part 3 arrived.
    assert refused + noticed >= 1
    ref = Reference.build(part1 + part2 + part3, settings)
    problems = await compare_all(settings, ref)
    assert not problems, "\n".join(problems[:20])


async def test_restart_resumes_from_redis_not_kafka(settings: Settings) -> None:
    t0 = int(time.time() * 1000) - 7_200_000
    a, b = clickstream_mix(500, t0), clickstream_mix(500, t0 + 1_000_000)
    async with EngineHarness(settings):
        await publish_events(settings, a)
        await wait_caught_up(settings)
    await publish_events(settings, b)
    async with EngineHarness(settings):  # a new worker: same group, state only in Redis
        await wait_caught_up(settings)
    ref = Reference.build(a + b, settings)
    problems = await compare_all(settings, ref)
    assert not problems, "\n".join(problems[:20])
