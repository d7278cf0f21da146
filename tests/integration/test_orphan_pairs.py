"""Orphan-click pair state on a real Redis (apply.lua op Q, stream/engine/deltas.py).

The orphan-click counter must equal the batch definition (clicks of a (user, campaign,
placement) pair that has no impression that local day) whatever the order events arrive in and
however they are cut into batches -- and stay so across an upgrade from the layout before (one
hash a day with hex fields, op O) in the middle of a day: pairs written before it are neither
forgotten nor counted twice.
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_layout
from stream.engine import store
from stream.engine.deltas import (
    ADPAIR_HASHES,
    LEGACY_ADPAIRS,
    Deltas,
    Layout,
    adpairs_key_name,
    build_call,
    pair_digest,
)
from stream.engine.keys import escape, field
from stream.engine.windows import Windows

pytestmark = pytest.mark.integration

#: (day, user, campaign, placement, 0 = impression / 1 = click)
Ad = tuple[int, str, str, str, int]
ADS = [("c1", "p1"), ("c1", "p2"), ("c:{2}|%", "p 1")]


def _events(rng: random.Random, days: list[int], users: int, n: int) -> list[Ad]:
    return [
        (rng.choice(days), f"u{rng.randrange(users)}", *rng.choice(ADS), int(rng.random() < 0.5))
        for _ in range(n)
    ]


def _orphan_field(campaign: str, placement: str) -> str:
    return field("orph", escape(campaign), escape(placement))


def _reference(events: list[Ad]) -> dict[tuple[int, str], int]:
    """The batch definition: per (day, orphan field), clicks of pairs without an impression."""
    seen: dict[tuple[int, str, str, str], list[int]] = {}
    for day, user, c, p, which in events:
        seen.setdefault((day, user, c, p), [0, 0])[which] += 1
    out: dict[tuple[int, str], int] = {}
    for (day, _, c, p), (imps, clicks) in seen.items():
        if imps == 0 and clicks:
            key = (day, _orphan_field(c, p))
            out[key] = out.get(key, 0) + clicks
    return out


def _deltas(batch: list[Ad]) -> Deltas:
    """What the clickstream fold records for these events (stream/metrics/clickstream.py)."""
    deltas = Deltas()
    for day, user, c, p, which in batch:
        entry = deltas.orphan_pairs.setdefault(
            (day, user, escape(c), escape(p)), [0, 0, _orphan_field(c, p)]
        )
        entry[which] += 1  # type: ignore[operator]
    return deltas


def _legacy_call(
    deltas: Deltas, layout: Layout, shard: str, expected: int, last: int, now: int
) -> tuple[list[str], list[str | int | bytes]]:
    """KEYS and ARGV as build_call made them before op Q: op O, one hash a day, hex fields."""
    keys = layout.keys
    call_keys = [keys.state(shard)]

    def index(key: str) -> int:
        if key not in call_keys:
            call_keys.append(key)
        return call_keys.index(key) + 1

    by_day: dict[int, list[tuple[str, list[int | str]]]] = {}
    for (day, user, campaign, placement), entry in deltas.orphan_pairs.items():
        by_day.setdefault(day, []).append((pair_digest(user, campaign, placement), entry))
    ops: list[str | int] = []
    for day, entries in by_day.items():
        keep = max(3 * 86400, layout.lateness_s + 86400)
        expire_at = max(layout.windows.end_of("day", day), now) + keep
        ops += [
            "O",
            index(keys.extra(shard, "d", day, LEGACY_ADPAIRS)),
            expire_at,
            len(entries),
            index(keys.counters(shard, "d", day)),
        ]
        for digest, (di, dc, cfield) in entries:
            ops += [digest, cfield, di, dc]
    return call_keys, [expected, last, 0, len(by_day), msgspec.msgpack.encode(ops)]


async def _apply(
    client: Any,
    layout: Layout,
    shard: str,
    batches: list[list[Ad]],
    offset: int,
    now: int,
    legacy: bool = False,
) -> int:
    for batch in batches:
        deltas = _deltas(batch)
        last = offset + len(batch)
        if legacy:
            keys, argv = _legacy_call(deltas, layout, shard, offset, last, now)
        else:
            keys, argv = build_call(deltas, layout, shard, offset, last, 0, now)
        (outcome,) = await store.apply_calls(client, [store.PendingCall(shard, keys, argv)])
        assert outcome.applied
        offset = last
    return offset


def _cut(rng: random.Random, events: list[Ad]) -> list[list[Ad]]:
    batches: list[list[Ad]] = []
    i = 0
    while i < len(events):
        size = rng.choice([1, 2, 5, 20, 200])
        batches.append(events[i : i + size])
        i += size
    return batches


async def _orphans(
    client: Any, layout: Layout, shard: str, days: list[int]
) -> dict[tuple[int, str], int]:
    out: dict[tuple[int, str], int] = {}
    for day in days:
        raw = await client.hgetall(layout.keys.counters(shard, "d", day))
        for f, v in raw.items():
            if int(v):
                out[(day, f.decode())] = int(v)
    return out


def _setup(settings: Settings) -> tuple[Layout, int, list[int]]:
    windows = Windows(settings.zone)
    now = int(time.time())
    today = windows.start_of("day", now)
    return build_layout(settings, windows), now, [windows.start_of("day", today - 1), today]


async def test_orphan_clicks_match_the_batch_definition_in_any_order_and_cut(
    settings: Settings, redis_client: Any
) -> None:
    await store.load_function(redis_client)
    layout, now, days = _setup(settings)
    rng = random.Random(7)
    for trial in range(12):
        # few users: pairs repeat, so impressions and clicks of one pair meet across batches
        events = _events(rng, days, users=rng.choice([3, 30, 600]), n=rng.choice([40, 900]))
        expected = _reference(events)
        for order in range(3):
            shard = f"clickstream.{trial * 10 + order}"
            shuffled = events[:]
            rng.shuffle(shuffled)
            await _apply(redis_client, layout, shard, _cut(rng, shuffled), -1, now)
            assert await _orphans(redis_client, layout, shard, days) == expected, (trial, order)
            assert not await redis_client.exists(
                *(layout.keys.extra(shard, "d", d, LEGACY_ADPAIRS) for d in days)
            )


async def test_pair_state_is_small_listpack_hashes_with_a_time_to_live(
    settings: Settings, redis_client: Any
) -> None:
    await store.load_function(redis_client)
    layout, now, days = _setup(settings)
    rng = random.Random(3)
    events = _events(rng, days[1:], users=10_000, n=12_000)
    shard = "clickstream.0"
    await _apply(redis_client, layout, shard, [events[:6_000], events[6_000:]], -1, now)
    assert await _orphans(redis_client, layout, shard, days) == _reference(events)
    names = [layout.keys.extra(shard, "d", days[1], adpairs_key_name(b)) for b in range(256)]
    async with redis_client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hlen(name)
            pipe.object("encoding", name)
            pipe.ttl(name)
        replies = await pipe.execute()
    lengths, encodings, ttls = replies[::3], replies[1::3], replies[2::3]
    pairs = len({(d, u, c, p) for d, u, c, p, _ in events})
    assert sum(lengths) == pairs and len(names) == ADPAIR_HASHES
    assert all(e in (b"listpack", "listpack") for e in encodings)
    assert all(t > 3 * 86400 - 60 for t in ttls)


async def test_an_upgrade_in_the_middle_of_a_day_neither_forgets_nor_double_counts(
    settings: Settings, redis_client: Any
) -> None:
    await store.load_function(redis_client)
    layout, now, days = _setup(settings)
    rng = random.Random(11)
    for trial in range(16):
        events = _events(rng, days, users=rng.choice([2, 20, 200]), n=rng.choice([60, 600]))
        batches = _cut(rng, events)
        upgrade = rng.randrange(len(batches) + 1)
        shard = f"clickstream.{trial}"
        offset = await _apply(redis_client, layout, shard, batches[:upgrade], -1, now, True)
        legacy = [layout.keys.extra(shard, "d", d, LEGACY_ADPAIRS) for d in days]
        before = [await redis_client.hgetall(k) for k in legacy]
        # later: a day that has ended gets a later expiry from each write
        await _apply(redis_client, layout, shard, batches[upgrade:], offset, now + 100)
        assert await _orphans(redis_client, layout, shard, days) == _reference(events), trial
        # the layout before is read, never written, and lives as long as the state next to it
        assert [await redis_client.hgetall(k) for k in legacy] == before
        for day, key in zip(days, legacy, strict=True):
            # EXPIRETIME, not TTL: two TTLs read a second apart differ by one (seen in CI)
            async with redis_client.pipeline(transaction=False) as pipe:
                for b in range(ADPAIR_HASHES):
                    pipe.expiretime(layout.keys.extra(shard, "d", day, adpairs_key_name(b)))
                newest = max(await pipe.execute())
            if before[days.index(day)] and newest > 0:
                assert await redis_client.expiretime(key) >= newest
