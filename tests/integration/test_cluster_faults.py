"""The engine on a real Redis Cluster through faults: a primary killed mid-run, writes the dead
primary acknowledged but never replicated, live resharding, a cluster without quorum, and the
churn-risk and relay outboxes through failovers. Each run is checked against the batch
reference: nothing lost, nothing counted twice.

The cluster is this module's own (it gets broken on purpose), so the module runs once, in the
default pass; the other integration tests run on a shared cluster with ``--redis-cluster``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from stream.config.settings import Settings
from stream.config.wiring import build_churn_publisher, build_keys
from stream.engine import store
from stream.infra.connections import redis_target
from stream.infra.redis_cluster import LocalRedisCluster
from stream.metrics.score import OUTBOX
from stream.metrics.score.codec import unpack
from tests.integration.test_churn_risk import (
    CLICKS,
    expected,
    read_topic,
    score_settings,
    simulated,
)
from tests.support.compare import compare_all
from tests.support.events import clickstream_mix
from tests.support.harness import (
    EngineHarness,
    counter_total,
    publish_events,
    stored_customers,
    wait_caught_up,
    wait_outbox_empty,
    wait_relayed,
)
from tests.support.reference import Reference

pytestmark = [pytest.mark.integration, pytest.mark.own_store]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    # A short node timeout: a failover takes about two of them. AOF, so that primaries killed
    # together come back with their data (no replica can take over without a majority).
    with LocalRedisCluster(
        primaries=3, replicas=1, node_timeout_ms=1000, appendonly=True
    ) as running:
        yield running


def on_cluster(settings: Settings, cluster: LocalRedisCluster) -> Settings:
    return settings.with_overrides(redis_url=cluster.url, redis_cluster=True)


def reseeded(settings: Settings, cluster: LocalRedisCluster, victim: int) -> Settings:
    """The same settings seeded with a primary other than ``victim``: a client created while
    the victim is dead (or its replica frozen) needs a seed node that answers."""
    seed = next(n.port for n in cluster.primaries() if n.port != victim)
    return settings.with_overrides(redis_url=f"redis://127.0.0.1:{seed}")


def primary_of(cluster: LocalRedisCluster, key: str) -> int:
    """Port of the primary that owns ``key``'s slot now."""
    client = redis.RedisCluster.from_url(cluster.url)
    try:
        slot = client.keyslot(key)
        return int(client.get_node_from_key(key).port) if slot >= 0 else -1
    finally:
        client.close()


async def heal(cluster: LocalRedisCluster, *ports: int) -> None:
    """Bring killed nodes back (as replicas) so the next test starts from 3 + 3.

    One at a time: two former primaries restarted together on a loaded 2-core machine once
    left one at ``cluster_state:fail`` for more than 30 s (a CI run), and even one at a time
    once for more than 60 s, which :meth:`LocalRedisCluster.rejoin` answers with a second
    restart."""
    for port in ports:
        await asyncio.to_thread(cluster.rejoin, port, 120.0)
    # A restarted former primary takes a moment to learn it lost its slots and become a
    # replica: until then the new primary has no replica to fail over to.
    deadline = time.monotonic() + 60
    while True:
        nodes = cluster.nodes
        followed = {n.primary_port for n in nodes}
        if all(p.port in followed for p in nodes if p.role == "primary" and p.slots):
            return
        assert time.monotonic() < deadline, f"a primary without a replica: {nodes}"
        await asyncio.sleep(0.1)


async def test_a_primary_killed_mid_run_loses_and_doubles_nothing(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    s = on_cluster(settings, cluster)
    t0 = int(time.time() * 1000) - 3_600_000
    parts = [clickstream_mix(800, t0 + i * 1_200_000) for i in range(3)]
    victim = primary_of(cluster, build_keys(s).state("clickstream.0"))
    s = reseeded(s, cluster, victim)
    async with EngineHarness(s) as harness:
        await publish_events(s, parts[0])
        await wait_caught_up(s)
        publishing = asyncio.create_task(publish_events(s, parts[1]))
        cluster.kill_primary(victim)
        await publishing
        await asyncio.to_thread(cluster.wait_failover, victim, 30.0)
        await publish_events(s, parts[2])
        await wait_caught_up(s, timeout=120)
        outage = counter_total(harness.metrics, "stream_redis_errors")
    await heal(cluster, victim)
    assert outage >= 1  # the worker saw the primary go and waited, rather than crashing
    problems = await compare_all(s, Reference.build([e for p in parts for e in p], s))
    assert not problems, "\n".join(problems[:20])


async def test_writes_the_old_primary_never_replicated_are_refused_and_reapplied(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    """The replica is frozen and cut off while the primary acknowledges a part, then the primary
    dies: the promoted replica's stored offsets are behind the worker's, so its next applies are
    refused, the partitions re-seeked and the lost part applied again — once."""
    s = on_cluster(settings, cluster)
    t0 = int(time.time() * 1000) - 3_600_000
    parts = [clickstream_mix(600, t0 + i * 1_200_000) for i in range(3)]
    victim = primary_of(cluster, build_keys(s).state("clickstream.0"))
    (replica,) = [n for n in cluster.nodes if n.primary_port == victim]
    s = reseeded(s, cluster, victim)
    async with EngineHarness(s) as harness:
        await publish_events(s, parts[0])
        await wait_caught_up(s)
        await asyncio.to_thread(cluster.wait_replicated, 10.0)
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            # What the replica's socket already holds it would still apply after SIGCONT: cut
            # the link, so part 2 stays on the primary alone.
            cluster.cut_replication(victim)
            await publish_events(s, parts[1])
            await wait_caught_up(s)  # acknowledged by the primary alone
            cluster.kill_primary(victim)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        await asyncio.to_thread(cluster.wait_failover, victim, 30.0)
        await publish_events(s, parts[2])
        await wait_caught_up(s, timeout=120)
        refused = counter_total(harness.metrics, "stream_batches_refused")
        lost = counter_total(harness.metrics, "stream_store_lost_partitions")
    await heal(cluster, victim)
    # the engine noticed the store went back and re-seeked: through a refused batch, or first
    # through the store watch (which checks every partition every 2 s, busy or idle)
    assert refused + lost >= 1
    problems = await compare_all(s, Reference.build([e for p in parts for e in p], s))
    assert not problems, "\n".join(problems[:20])


async def test_live_resharding_moves_partitions_under_the_worker(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    s = on_cluster(settings, cluster)
    t0 = int(time.time() * 1000) - 3_600_000
    parts = [clickstream_mix(800, t0 + i * 1_200_000) for i in range(3)]
    key = build_keys(s).state("clickstream.1")
    async with EngineHarness(s):
        await publish_events(s, parts[0])
        await wait_caught_up(s)
        source = primary_of(cluster, key)
        target = next(n.port for n in cluster.primaries() if n.port != source)
        owned = next(n for n in cluster.nodes if n.port == source).slots
        client = redis.RedisCluster.from_url(cluster.url)
        slot = client.keyslot(key)
        client.close()
        # redis-cli moves the source's lowest slots first: enough of them to include ours.
        count = sum(1 for lo, hi in owned for x in range(lo, hi + 1) if x <= slot)
        publishing = asyncio.create_task(publish_events(s, parts[1]))
        await asyncio.to_thread(cluster.reshard, count, source, target, 120.0)
        await publishing
        await publish_events(s, parts[2])
        await wait_caught_up(s, timeout=120)
    assert primary_of(cluster, key) == target
    problems = await compare_all(s, Reference.build([e for p in parts for e in p], s))
    assert not problems, "\n".join(problems[:20])


async def test_a_cluster_without_quorum_makes_the_worker_wait_then_resume(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    """Two of three primaries die together: no majority, so no replica is promoted and their
    slots stay down. The worker waits and retries, as for a Redis outage; once the primaries are
    back (from their AOF) it carries on, and nothing is lost or doubled."""
    s = on_cluster(settings, cluster)
    t0 = int(time.time() * 1000) - 3_600_000
    parts = [clickstream_mix(600, t0 + i * 1_200_000) for i in range(3)]
    async with EngineHarness(s) as harness:
        await publish_events(s, parts[0])
        await wait_caught_up(s)
        await asyncio.to_thread(cluster.wait_replicated, 10.0)
        first, second = (n.port for n in cluster.primaries()[:2])
        cluster.kill_primary(first)
        cluster.kill_primary(second)
        await publish_events(s, parts[1])
        await asyncio.sleep(4)  # several node timeouts: a failover would have happened by now
        waited = counter_total(harness.metrics, "stream_redis_errors")
        for port in (first, second):
            cluster.restart_node(port)
        await asyncio.to_thread(cluster.wait_ok, 60.0)
        await publish_events(s, parts[2])
        await wait_caught_up(s, timeout=120)
    assert waited >= 1  # it waited through the outage instead of crashing or skipping
    assert {first, second} <= {n.port for n in cluster.primaries()}  # nobody took over
    problems = await compare_all(s, Reference.build([e for p in parts for e in p], s))
    assert not problems, "\n".join(problems[:20])


async def test_churn_risk_and_relay_outboxes_survive_primary_failovers(
    settings: Settings, cluster: LocalRedisCluster
) -> None:
    """The outboxes live in Redis next to the state that filled them, so a failover can take
    back entries a primary acknowledged (and the publishers may already have sent). A primary
    holding relay outboxes dies while other families are relayed; then the primary of a home
    shard dies while the clickstream settles scores and the churn-risk publisher drains. Every
    relayed activity counts once (the scores equal the reference) and every transition is
    published once."""
    s = score_settings(on_cluster(settings, cluster))
    events = simulated(days=4)
    series, transitions = expected(events, s)
    home = build_keys(s).state("clickstream.0")
    home_primary = primary_of(cluster, home)
    relaying_primary = next(n.port for n in cluster.primaries() if n.port != home_primary)
    seed = next(
        n.port for n in cluster.primaries() if n.port not in (home_primary, relaying_primary)
    )
    s = s.with_overrides(redis_url=f"redis://127.0.0.1:{seed}")  # alive all along
    async with EngineHarness(s, relay=True) as harness:
        assert harness.engine is not None
        churn = build_churn_publisher(s, harness.engine, harness.metrics)
        churn.interval_s = 0.05
        await churn.start()
        try:
            relaying = asyncio.create_task(
                publish_events(s, [e for e in events if e["type"] not in CLICKS])
            )
            await asyncio.sleep(0.3)
            cluster.kill_primary(relaying_primary)
            await relaying
            await asyncio.to_thread(cluster.wait_failover, relaying_primary, 30.0)
            await wait_relayed(s, timeout=120)

            settling = asyncio.create_task(
                publish_events(s, [e for e in events if e["type"] in CLICKS])
            )
            await asyncio.sleep(0.3)
            cluster.kill_primary(home_primary)
            await settling
            await asyncio.to_thread(cluster.wait_failover, home_primary, 30.0)
            await wait_caught_up(s, timeout=120)
            await wait_outbox_empty(s, OUTBOX)
        finally:
            await churn.stop()
            await churn.redis.aclose()
    await heal(cluster, relaying_primary, home_primary)

    client = store.connect(redis_target(s))
    try:
        scored = [unpack(v, len(s.score.activities)) for v in await stored_customers(client, s)]
    finally:
        await client.aclose()
    got_scores = {c.user: c.score for c in scored if series.get(c.user)}
    assert got_scores == {u: sc[-1][1] for u, sc in series.items() if sc}
    published = await read_topic(s)
    ids = [m["id"] for m in published]
    assert len(ids) == len(set(ids)), "a transition was published twice"
    assert sorted(
        (m["customer"], m["ts"] // (s.score.bucket_seconds * 1000), m["reason"], m["old_score"],
         m["new_score"])
        for m in published
    ) == sorted(transitions)  # fmt: skip
