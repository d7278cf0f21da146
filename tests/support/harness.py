"""Run the real batch engine in-process against the real local stack, and wait for it.

Integration tests use this instead of a faust worker process (faster to start, same engine
code); the e2e tests run real ``stream worker`` processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.config.settings import Settings
from stream.config.wiring import build_engine, build_keys, build_relay_publisher
from stream.contract.types import FAMILY_OF, EventType
from stream.engine import store
from stream.engine.consumer import BatchEngine
from stream.engine.relay import OUTBOX as RELAY_OUTBOX
from stream.engine.relay import RelayPublisher
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.connections import redis_target
from stream.infra.topics import ensure_topics
from stream.metrics.score import AT_RISK_SET, HOME_FAMILY
from stream.metrics.score import STATE as SCORE_STATE
from stream.tools.offsets import log_ends
from stream.tools.publish import BatchPublisher
from stream.tools.simulate import DAY, SimulationConfig, Simulator


def topic_for(settings: Settings, event: dict[str, Any]) -> str:
    known = {t.value for t in EventType}
    family = FAMILY_OF[EventType(event["type"])] if event.get("type") in known else None
    return (
        settings.topics.by_family()[family] if family is not None else settings.topics.clickstream
    )


async def publish_events(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    await ensure_topics(settings)
    async with BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for event in events:
            key = str(event.get("user_id", "")).encode()
            await pub.send(topic_for(settings, event), key, orjson.dumps(event))
        await pub.flush()
        return pub.sent


async def publish_raw(
    settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]]
) -> None:
    await ensure_topics(settings)
    async with BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for key, value in messages:
            await pub.send(topic, key, value)


async def wait_caught_up(settings: Settings, timeout: float = 60.0) -> None:
    """Until Redis' stored offset of every input partition reaches its end offset."""
    ends = await log_ends(settings)
    families = settings.topics.families()
    keys = build_keys(settings)
    client = store.connect(redis_target(settings))
    deadline = time.monotonic() + timeout
    try:
        while True:
            behind = []
            for tp, end in ends.items():
                if end == 0:
                    continue
                shard = keys.shard(families[tp.topic], tp.partition)
                progress = await store.read_progress(client, keys, shard)
                if progress.offset < end - 1:
                    behind.append((shard, progress.offset, end - 1))
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not caught up after {timeout}s: {behind}")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def relay_backlog(settings: Settings) -> int:
    """Relay messages still waiting in any outbox (stream.engine.relay)."""
    client = store.connect(redis_target(settings))
    try:
        pattern = f"{settings.key_prefix}:{{*}}:ob:{RELAY_OUTBOX}.*"  # every shard's tag
        total = 0
        async for key in client.scan_iter(match=pattern, count=1000):
            total += int(await client.xlen(key))
        return total
    finally:
        await client.aclose()


async def wait_outbox_empty(settings: Settings, name: str, timeout: float = 60.0) -> None:
    """Until the outbox ``name`` of every shard is empty (published and trimmed)."""
    client = store.connect(redis_target(settings))
    pattern = f"{settings.key_prefix}:{{*}}:ob:{name}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            waiting = [int(await client.xlen(k)) async for k in client.scan_iter(match=pattern)]
            if not any(waiting):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox {name} not drained after {timeout}s: {waiting}")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def wait_relayed(settings: Settings, timeout: float = 60.0) -> None:
    """Until every input partition is caught up and every relay outbox is empty (sent, trimmed)
    and the home partitions have read what was relayed."""
    deadline = time.monotonic() + timeout
    await wait_caught_up(settings, timeout)
    while await relay_backlog(settings):
        if time.monotonic() > deadline:
            raise TimeoutError(f"relay outboxes not drained after {timeout}s")
        await asyncio.sleep(0.1)
    await wait_caught_up(settings, max(1.0, deadline - time.monotonic()))


class EngineHarness:
    """The engine in-process; with ``relay`` also the relay publisher a worker runs."""

    def __init__(self, settings: Settings, clock: Any = time.time, relay: bool = False) -> None:
        self.settings = settings
        self.clock = clock
        self.relay = relay
        self.metrics = WorkerMetrics()
        self.producer: AIOKafkaProducer | None = None
        self.engine: BatchEngine | None = None
        self.relay_publisher: RelayPublisher | None = None

    async def start(self) -> BatchEngine:
        s = self.settings
        await ensure_topics(s)
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all")
        await self.producer.start()
        producer = self.producer

        async def send(topic: str, key: bytes | None, value: bytes) -> Any:
            return await producer.send(topic, value, key=key)

        self.engine = build_engine(
            s,
            self.metrics,
            send,
            clock=self.clock,
            batch_timeout_ms=50,
            rebalance_timeout_ms=1000,
            session_timeout_ms=6000,
        )
        await self.engine.start()
        await asyncio.wait_for(self.engine.ready.wait(), 30)
        if self.relay:
            self.relay_publisher = build_relay_publisher(s, self.engine, self.metrics)
            self.relay_publisher.interval_s = 0.05
            await self.relay_publisher.start()
        return self.engine

    async def stop(self) -> None:
        if self.relay_publisher is not None:
            await self.relay_publisher.stop()
            await self.relay_publisher.redis.aclose()
        if self.engine is not None:
            await self.engine.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def __aenter__(self) -> EngineHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def stored_customers(client: Any, settings: Settings) -> list[bytes]:
    """Every stored customer value (state, then any pending record) of every home partition."""
    keys = build_keys(settings)
    out: list[bytes] = []
    for p in range(settings.topic_partitions):
        shard = keys.shard(HOME_FAMILY, p)
        out += (await client.hgetall(keys.keyed(shard, SCORE_STATE))).values()
    return out


async def at_risk_members(client: Any, settings: Settings) -> set[str]:
    """The at-risk ranking's members, all home partitions together."""
    keys = build_keys(settings)
    out: set[str] = set()
    for p in range(settings.topic_partitions):
        ranking = keys.zset(keys.shard(HOME_FAMILY, p), AT_RISK_SET)
        out |= {m.decode() for m in await client.zrange(ranking, 0, -1)}
    return out


async def read_dlq(
    settings: Settings, expected: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topics.dlq,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


def _counter_samples(metrics: WorkerMetrics, name: str) -> Iterable[Any]:
    for m in metrics.registry.collect():
        if m.name == name:
            yield from (s for s in m.samples if s.name.endswith("_total"))


def counter_values(metrics: WorkerMetrics, name: str, label: str) -> dict[str, float]:
    """A worker counter's current values by one label (summed over its other labels)."""
    out: dict[str, float] = {}
    for s in _counter_samples(metrics, name):
        key = s.labels.get(label, "")
        out[key] = out.get(key, 0.0) + s.value
    return out


def counter_total(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    """A worker counter's sum over the series whose labels match ``labels``."""
    return sum(
        s.value
        for s in _counter_samples(metrics, name)
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def wipe_store(settings: Settings, functions: bool = True) -> None:
    """What a Redis restart without persistence leaves: no keys, and with ``functions`` no
    functions either (on a cluster, on every primary)."""
    commands = [("FLUSHALL",), ("FUNCTION", "FLUSH")] if functions else [("FLUSHALL",)]
    if settings.redis_cluster:
        cluster = redis.RedisCluster.from_url(settings.redis_url)
        try:
            for node in cluster.get_primaries():
                for command in commands:
                    cluster.execute_command(*command, target_nodes=node)
        finally:
            cluster.close()
        return
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for command in commands:
            client.execute_command(*command)
    finally:
        client.close()


def simulated_day(seed: int, users: int) -> list[dict[str, Any]]:
    """One day of simulated events of every family, the day before yesterday (UTC)."""
    start_ms = (int(time.time() * 1000) // DAY - 2) * DAY
    sim = Simulator(SimulationConfig(seed=seed, users=users, start_ms=start_ms, activity=1.0))
    events = []
    for ev in sim.events():  # an endless stream: cut after a day
        if ev.ts_ms >= start_ms + DAY:
            break
        events.append(ev.event)
    return events
