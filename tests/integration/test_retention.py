"""Window expiry on a real Redis: a replay of older data keeps hour and day windows for their
retention from now, and only the minute windows a live run would still hold."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context, build_keys, build_layout
from stream.engine import store
from stream.engine.deltas import build_call
from stream.engine.fold import fold_records
from stream.engine.windows import Windows
from tests.support.events import event

pytestmark = pytest.mark.integration

SHARD = "clickstream.0"


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers: list[tuple[str, bytes | None]] = []


async def test_a_replay_keeps_the_minutes_a_live_run_would_and_every_hour(
    settings: Settings, redis_client: Any
) -> None:
    await store.load_function(redis_client)
    windows = Windows(settings.zone)
    layout = build_layout(settings, windows)
    keys = build_keys(settings)
    now_ms = int(time.time() * 1000)
    ages_h = [20, 7, 5, 1]  # one page view at each age, oldest first (none is late)
    stamps = [now_ms - h * 3_600_000 for h in ages_h]
    recs = [
        Rec(i, orjson.dumps(event("page_view", f"u{i}", ts, page="/")))
        for i, ts in enumerate(stamps)
    ]
    fold = fold_records(recs, build_fold_context(settings, windows), -1, now_ms)
    assert fold is not None
    call_keys, argv = build_call(
        fold.deltas, layout, SHARD, -1, len(recs) - 1, fold.max_ts, now_ms // 1000
    )
    (outcome,) = await store.apply_calls(redis_client, [store.PendingCall(SHARD, call_keys, argv)])
    assert outcome.applied
    now = now_ms // 1000
    for age, ts in zip(ages_h, stamps, strict=True):
        minute = windows.start_of("minute", ts / 1000)
        minute_key = keys.counters(SHARD, "m", minute)
        active_key = keys.users(SHARD, "m", minute, "active")
        if age > 6:  # past the 6 h minute retention: gone, as in a live run
            assert not await redis_client.exists(minute_key, active_key)
        else:  # kept until window end + 6 h, not 6 h from now
            assert int(await redis_client.hget(minute_key, "pv")) == 1
            expire = await redis_client.expiretime(minute_key)
            assert expire == windows.end_of("minute", minute) + settings.retention.minute
            assert expire < now + settings.retention.minute
        hour = windows.start_of("hour", ts / 1000)
        hour_key = keys.counters(SHARD, "h", hour)
        assert int(await redis_client.hget(hour_key, "pv")) >= 1
        assert await redis_client.expiretime(hour_key) >= now + settings.retention.hour - 5
