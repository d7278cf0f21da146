"""How batches reach a Redis Cluster: each partition's FCALL goes straight to its slot's
primary, routed by the keys it declares — never via ``COMMAND GETKEYS``, which would send the
whole batch over the network once more per call (redis-py asks a node for FCALL's keys)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
import redis

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context, build_keys, build_layout
from stream.engine import store
from stream.engine.deltas import build_call
from stream.engine.fold import fold_records
from stream.engine.windows import Windows
from stream.infra.redis_cluster import LocalRedisCluster
from tests.support.events import event

pytestmark = [pytest.mark.integration, pytest.mark.own_store]


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers: list[tuple[str, bytes | None]] = []


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(primaries=3, replicas=0) as running:
        yield running


def getkeys_calls(cluster: LocalRedisCluster) -> int:
    total = 0
    for node in cluster.primaries():
        stats = redis.Redis(port=node.port).info("commandstats")
        total += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
    return total


async def test_batches_go_to_their_primary_without_asking_for_keys(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    s = settings.with_overrides(redis_url=cluster.url, redis_cluster=True)
    client = store.connect(store.RedisTarget(cluster.url, cluster=True))
    try:
        assert isinstance(client, store.FcallAwareCluster)
        await store.load_function(client)
        windows = Windows(s.zone)
        ctx, layout = build_fold_context(s, windows), build_layout(s, windows)
        now_ms = int(time.time() * 1000)
        calls = []
        for p in range(8):
            recs = [
                Rec(i, orjson.dumps(event("page_view", f"u{p}", now_ms - 1000 + i, page="/")))
                for i in range(3)
            ]
            fold = fold_records(recs, ctx, -1, now_ms)
            shard = f"clickstream.{p}"
            keys, argv = build_call(fold.deltas, layout, shard, -1, 2, fold.max_ts, now_ms // 1000)
            calls.append(store.PendingCall(shard, keys, argv))
        before = getkeys_calls(cluster)
        outcomes = await store.apply_calls(client, calls)
        assert all(o.applied for o in outcomes)
        assert getkeys_calls(cluster) == before  # routed from the declared keys alone
        k = build_keys(s)
        stored = [await store.read_progress(client, k, f"clickstream.{p}") for p in range(8)]
        assert [p.offset for p in stored] == [2] * 8
        owners = {
            redis.RedisCluster.from_url(cluster.url).get_node_from_key(k.state(c.shard)).port
            for c in calls
        }
        assert len(owners) == 3  # the spread placement used every primary
    finally:
        await client.aclose()
