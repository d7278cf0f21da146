"""Op H (apply.lua) on a real Redis: a window hash's increments land exactly, whether the hash is
new (one variadic HSET of the increments), exists (HINCRBY), or holds a count a Lua number (a
double) cannot hold exactly."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.engine import store
from stream.engine.deltas import ApplyOps

pytestmark = pytest.mark.integration

SHARD = "clickstream.0"
DAY = 1_700_006_400
#: 2^53: below it a Lua number is an exact integer
EXACT = 2**53


class Counters:
    """Applies batches of increments to one window hash through the real apply, keeping the
    partition's offset in step, and the sums they must add up to."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.keys = build_keys(settings)
        self.key = self.keys.counters(SHARD, "d", DAY)
        self.offset = -1
        self.expected: dict[str, int] = {}

    async def apply(self, *batches: dict[str, int]) -> None:
        """One apply call whose op H's come one per batch, in order, on the same hash."""
        call = ApplyOps(self.keys.state(SHARD))
        for fields in batches:
            call.hincr(self.key, 0, fields)
            for f, d in fields.items():
                self.expected[f] = self.expected.get(f, 0) + d
        argv: list[str | int | bytes] = [
            self.offset,
            self.offset + 1,
            0,
            call.n_ops,
            msgspec.msgpack.encode(call.ops),
        ]
        (outcome,) = await store.apply_calls(
            self.client, [store.PendingCall(SHARD, call.keys, argv)]
        )
        assert outcome.applied
        self.offset += 1

    async def stored(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.key)
        return {k.decode(): int(v) for k, v in raw.items()}


@pytest.fixture
async def counters(settings: Settings, redis_client: Any) -> Counters:
    await store.load_function(redis_client)
    return Counters(redis_client, settings)


async def test_new_then_existing_hash_sums_every_field(counters: Counters) -> None:
    await counters.apply({"pv": 3, "clicks": 1})  # a new hash: its increments are its values
    await counters.apply({"pv": 2, "conversions": 4, "clicks": -1})  # existing: incremented
    await counters.apply({"pv": 1})
    await counters.apply({"pv": 5, "views": 7}, {"pv": -2, "views": 1})  # two ops, one call
    assert await counters.stored() == {"pv": 9, "clicks": 0, "conversions": 4, "views": 8}
    assert await counters.stored() == counters.expected


async def test_counts_past_a_doubles_exact_range_stay_exact(counters: Counters) -> None:
    # Counts this large only build up over many batches (a delta is a batch's sum): stored here
    # directly, as that history would have left them.
    start = {"near": EXACT - 2, "far": 2**62 + 3, "low": -(EXACT - 1), "pad": 0}
    await counters.client.hset(counters.key, mapping=start)
    counters.expected.update(start)
    await counters.apply({"near": 1, "far": 1, "low": -1, "pad": 1})  # under, over, at the edge
    await counters.apply({"near": 1, "far": -5, "low": 1, "pad": 1})
    await counters.apply({"near": 1, "far": 1, "low": 2, "pad": 1})
    assert await counters.stored() == counters.expected
    assert counters.expected["near"] == EXACT + 1  # not representable as a double


async def test_random_batches_equal_the_batch_sums(counters: Counters) -> None:
    rng = random.Random(21)
    names = [f"f{i}" for i in range(40)]
    for _ in range(60):
        batch = {
            f: rng.choice([rng.randint(-5, 50), rng.randint(-(10**12), 10**12)])
            for f in rng.sample(names, rng.randint(1, len(names)))
        }
        await counters.apply(batch)
    assert await counters.stored() == counters.expected
