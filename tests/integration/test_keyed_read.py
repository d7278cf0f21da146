"""The keyed read through the real apply.lua: the fields named in one packed argument
(es_read_keyed_v2, what the engine calls) read exactly what the same fields named one argument
each (es_read_keyed_v1, kept for a worker of the release before) read, and what the state hash
and due set hold: named fields once each, due ones up to the limit, missing ones as None,
pending records split off."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.engine import store

pytestmark = pytest.mark.integration

SHARD = "clickstream.0"


def _decoded(reply: bytes, split: bool) -> dict[str, Any]:
    flat = msgspec.msgpack.decode(reply)
    it = iter(flat)
    if split:
        return {f: (v or None, p or None) for f, v, p in zip(it, it, it, strict=True)}
    return {f: v or None for f, v in zip(it, it, strict=True)}


@pytest.mark.parametrize("split", [False, True], ids=["plain", "pending"])
@pytest.mark.parametrize("named", [0, 7, 9_500], ids=["none", "few", "past-a-chunk"])
async def test_packed_fields_read_what_listed_fields_read(
    settings: Settings, redis_client: Any, split: bool, named: int
) -> None:
    await store.load_function(redis_client)
    keys = build_keys(settings)
    state_key, due_key = keys.keyed(SHARD, "ses"), keys.keyed_due(SHARD, "ses")
    rng = random.Random(named)
    stored = {f"{i:016x}": f"value-{i}".encode() for i in range(0, 12_000, 2)}
    pending: dict[str, list[Any]] = {}
    if split:  # some values carry a pending record after a NUL (apply.lua op A)
        for i, f in enumerate(list(stored)[::5]):
            pending[f] = [i, "x"]
        pending["00000000000000ff"] = [9, "only"]
        stored["00000000000000ff"] = b""
        for f, record in pending.items():
            stored[f] += b"\0" + msgspec.msgpack.encode(record)
    await redis_client.hset(state_key, mapping=stored)
    due = {f: i for i, f in enumerate(list(stored)[:3_000])}
    await redis_client.zadd(due_key, due)
    # present and missing fields, some named twice, some also due
    names = [f"{rng.randrange(0, 14_000):016x}" for _ in range(named)]
    names += names[: named // 10]
    due_until, limit = 2_000, 1_500

    (packed,) = await store.read_keyed(
        redis_client, [store.KeyedRead(state_key, due_key, names, due_until, limit, split)]
    )
    v1 = "es_read_keyed_split_v1" if split else "es_read_keyed_v1"
    listed = _decoded(
        await redis_client.fcall_ro(v1, 2, state_key, due_key, due_until, limit, *names), split
    )

    assert packed == listed
    expected_fields = set(names) | set(list(due)[:limit])
    assert set(packed) == expected_fields
    for f, got in packed.items():
        value, record = got if split else (got, None)
        if f not in stored:
            assert value is None and record is None
            continue
        assert value == (stored[f].split(b"\0")[0].decode() or None)
        assert record == pending.get(f)
