"""The project's own Redis Cluster (3 primaries + 3 replicas) survives a primary's SIGKILL and a
live reshard with no key lost, seen through redis-py's asyncio cluster client.

This checks the infrastructure the cluster tests and the benchmark stand on: if failover or
resharding lost or duplicated keys here, a metric test failing on the cluster could not tell
a bug in the engine from one in the stack.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from stream.config.settings import Settings
from stream.engine import store
from stream.infra.connections import redis_target
from stream.infra.redis_cluster import CLUSTER_SLOTS, LocalRedisCluster
from stream.infra.runtime import with_infrastructure

pytestmark = [pytest.mark.integration, pytest.mark.own_store]

RESHARD_SLOTS = 100


@pytest.fixture
def cluster() -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(primaries=3, replicas=1) as running:
        yield running


def _owner_by_slot(cluster: LocalRedisCluster) -> dict[int, int]:
    return {
        slot: node.port
        for node in cluster.primaries()
        for low, high in node.slots
        for slot in range(low, high + 1)
    }


def _tags_for(slots: set[int]) -> dict[int, str]:
    """A hash tag per slot, so that ``{tag}`` keys can be put in chosen slots."""
    found: dict[int, str] = {}
    for n in itertools.count():
        tag = f"t{n}"
        slot = key_slot(tag.encode())
        if slot in slots:
            found.setdefault(slot, tag)
            if len(found) == len(slots):
                return found
    raise AssertionError("unreachable")


def _all_ok(cluster: LocalRedisCluster) -> dict[int, str]:
    return {p: cluster.cluster_info(p)["cluster_state"] for p in cluster.ports}


async def _write(client: RedisCluster, items: dict[str, str]) -> None:
    async with client.pipeline() as pipe:
        for key, value in items.items():
            pipe.set(key, value)
        assert all(await pipe.execute())


async def _read(client: RedisCluster, keys: list[str]) -> dict[str, str | None]:
    values = await client.mget_nonatomic(keys)
    return dict(zip(keys, values, strict=True))


async def test_cluster_fails_over_and_reshards_without_losing_keys(
    cluster: LocalRedisCluster,
) -> None:
    assert set(_all_ok(cluster).values()) == {"ok"}
    assert len(cluster.primaries()) == 3 and len(cluster.replicas()) == 3
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    expected: dict[str, str] = {}
    try:
        # --- writes in many slots, on every primary, replicated before the kill
        before = {f"pre:{i}": f"v{i}" for i in range(300)}
        await _write(client, before)
        expected |= before
        owner = _owner_by_slot(cluster)
        assert len({owner[key_slot(k.encode())] for k in before}) == 3  # every primary has some
        await asyncio.to_thread(cluster.wait_replicated, 10.0)

        victim = cluster.primaries()[0]
        (follower,) = [r for r in cluster.replicas() if r.primary_port == victim.port]
        on_victim = sum(1 for k in before if owner[key_slot(k.encode())] == victim.port)
        assert on_victim > 0
        assert await client.dbsize(target_nodes=client.get_node("127.0.0.1", follower.port)) == (
            on_victim
        )

        # --- SIGKILL a primary: its replica takes over, with the data
        killed = cluster.kill_primary(0)
        assert killed == victim.port
        promoted = await asyncio.to_thread(cluster.wait_failover, killed, 20.0)
        assert promoted == follower.port
        assert cluster.cluster_info(promoted)["cluster_state"] == "ok"
        assert await _read(client, list(before)) == before

        after = {f"post:{i}": f"w{i}" for i in range(100)}
        await _write(client, after)
        expected |= after
        assert await _read(client, list(after)) == after

        # --- the killed node comes back (same nodes.conf) as a replica of its replacement
        cluster.restart_node(killed)
        await asyncio.to_thread(cluster.wait_ok, 20.0)
        back = next(n for n in cluster.nodes if n.port == killed)
        assert back.role == "replica" and back.primary_port == promoted

        # --- live reshard of 100 slots while a client keeps writing and reading
        source, target = promoted, cluster.primaries()[1].port
        assert source != target
        owner = _owner_by_slot(cluster)
        source_slots = {slot for slot, port in owner.items() if port == source}
        tags = _tags_for(source_slots)
        seeded = {f"seed:{{{tag}}}": f"s{slot}" for slot, tag in tags.items()}  # one per slot
        # redis-cli moves the source's lowest slots first; a few of those get many keys, so
        # that migrating each takes long enough for the writer below to land in it and be
        # sent ASK (fresh keys in a migrating slot live on the target already).
        heavy = sorted(source_slots)[: RESHARD_SLOTS : RESHARD_SLOTS // 5]
        seeded |= {f"heavy:{{{tags[s]}}}:{j}": f"h{s}.{j}" for s in heavy for j in range(2000)}
        await _write(client, seeded)
        expected |= seeded

        ops = 0
        mismatches: list[tuple[str, str, object]] = []

        async def keep_writing(done: asyncio.Event) -> None:
            nonlocal ops
            for i in itertools.count():
                if done.is_set() and ops >= 50:
                    return
                key = f"loop:{{{tags[heavy[i % len(heavy)]]}}}:{i}"
                value = f"l{i}"
                await client.set(key, value)
                got = await client.get(key)
                if got != value:
                    mismatches.append((key, value, got))
                expected[key] = value
                ops += 1

        done = asyncio.Event()
        writer = asyncio.create_task(keep_writing(done))
        try:
            await asyncio.to_thread(cluster.reshard, RESHARD_SLOTS, source, target, 60.0)
        finally:
            done.set()
            await writer
        assert mismatches == []

        moved_to = _owner_by_slot(cluster)
        moved = {s for s in source_slots if moved_to[s] == target}
        assert len(moved) == RESHARD_SLOTS
        assert set(heavy) <= moved, "redis-cli no longer moves the lowest slots first"
        assert len(moved_to) == CLUSTER_SLOTS
        assert sum(1 for k in expected if key_slot(k.encode()) in moved) >= RESHARD_SLOTS
        assert set(_all_ok(cluster).values()) == {"ok"}

        # --- nothing lost, nothing left behind twice
        assert await _read(client, list(expected)) == expected
        # Summed over the primaries (without target_nodes redis-py asks only its default node).
        assert await client.dbsize(target_nodes=RedisCluster.PRIMARIES) == len(expected)
    finally:
        await client.aclose()


async def test_the_local_stack_runs_the_store_as_a_cluster_when_asked() -> None:
    """``STREAM_REDIS_CLUSTER=true`` without a ``REDIS_URL``: the demo's and the tools' local
    stack starts a 3 + 3 cluster, and the settings they run with point at it."""
    settings, stack = with_infrastructure(Settings(redis_cluster=True))
    assert stack is not None
    try:
        assert settings.redis_cluster and settings.redis_url == stack.redis_url
        client = store.connect(redis_target(settings))
        assert isinstance(client, RedisCluster)
        try:
            for i in range(30):  # keys spread over every primary
                await client.set(f"probe:{i}", i)
            assert [int(await client.get(f"probe:{i}")) for i in range(30)] == list(range(30))
            assert len(client.get_primaries()) == 3
            owners = [n for n in (await client.cluster_nodes()).values() if n["slots"]]
            owned = sum(int(hi) - int(lo) + 1 for n in owners for lo, hi in n["slots"])
            assert len(owners) == 3 and owned == CLUSTER_SLOTS
        finally:
            await client.aclose()
    finally:
        stack.stop()
