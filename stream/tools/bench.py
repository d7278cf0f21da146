"""``stream bench``: throughput, latency and footprint of the pipeline on this machine.

Phases, in one run so that ratios are comparable (2-core machines vary run to run):

1. produce N simulated events of a family mix to a fresh topic set (the simulator, then
   timestamps shifted so the stream ends just before now);
2. reference: a raw aiokafka ``getmany`` + orjson decode loop over the same topic;
3. pipeline: one real ``stream worker`` process, timed from ready (partitions assigned) until
   Redis holds the last offset of every partition — events/s per worker process;
4. latency: events stamped now, produced at half the measured rate; produce → visible in Redis
   (the partition's stored offset passes the message's offset), p50 and p99;
5. footprint: the worker's peak RSS (VmHWM) and Redis bytes per active user.

Never a unit test: figures depend on the machine. Results print as a table and as JSON
(:mod:`stream.tools.bench_report`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio.cluster import RedisCluster

from stream.config.settings import Settings, TopicNames
from stream.config.wiring import build_keys
from stream.contract.types import Family
from stream.engine import store
from stream.infra.connections import redis_target
from stream.infra.localstack import die_with_parent, free_port
from stream.infra.redis_cluster import LocalRedisCluster
from stream.infra.runtime import with_infrastructure, worker_environment
from stream.infra.topics import ensure_topics
from stream.metrics.score import AT_RISK_SET, OUTBOX, TOTALS
from stream.metrics.score import STATE as SCORE_STATE
from stream.metrics.sessions import SessionState
from stream.tools.bench_report import BenchResult
from stream.tools.health import worker_ready
from stream.tools.offsets import log_ends, partitions_of
from stream.tools.publish import BatchPublisher
from stream.tools.scrape import scrape, total
from stream.tools.simulate import SimulationConfig, Simulator

__all__ = [
    "MIXES",
    "event_time_span_ms",
    "redis_command_usec",
    "redis_cpu_seconds",
    "run_bench",
    "simulated",
]

MIXES: dict[str, frozenset[Family]] = {
    "clickstream": frozenset({Family.CLICKSTREAM}),
    "all": frozenset(Family),
}


def bench_settings(base: Settings, tag: str, partitions: int) -> Settings:
    return base.with_overrides(
        topics=TopicNames.with_prefix(tag),
        consumer_group=f"{tag}-group",
        key_prefix=tag,
        topic_partitions=partitions,
    )


def simulated(
    count: int, users: int, mix: frozenset[Family], seed: int
) -> list[tuple[Family, bytes, bytes]]:
    """N events of the mix, shifted so that the last one is a minute before now."""
    probe = Simulator(SimulationConfig(seed=seed, users=users))
    first = last = None
    n = 0
    for ev in probe.events():
        if ev.family in mix:
            first = ev.ts_ms if first is None else first
            last = ev.ts_ms
            n += 1
            if n >= count:
                break
    assert first is not None and last is not None
    shift = int(time.time() * 1000) - 60_000 - last
    out = []
    n = 0
    for ev in Simulator(SimulationConfig(seed=seed, users=users)).events():
        if ev.family not in mix:
            continue
        body = dict(ev.event)
        body["ts"] = ev.ts_ms + shift
        out.append((ev.family, body["user_id"].encode(), orjson.dumps(body)))
        n += 1
        if n >= count:
            break
    return out


async def produce(settings: Settings, events: Iterable[tuple[Family, bytes, bytes]]) -> int:
    topics = settings.topics.by_family()
    async with BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for family, key, value in events:
            await pub.send(topics[family], key, value)
        await pub.flush()
        return pub.sent


async def raw_loop(settings: Settings, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, settings.topics.inputs())
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        loads = orjson.loads
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for r in records:
                    loads(r.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def stored_offsets(
    client: Any, settings: Settings, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    keys = build_keys(settings)
    families = settings.topics.families()
    tps = list(tps)
    async with client.pipeline(transaction=False) as pipe:
        for tp in tps:
            pipe.hget(keys.state(keys.shard(families[tp.topic], tp.partition)), "offset")
        replies = await pipe.execute()
    return {tp: int(r) if r is not None else -1 for tp, r in zip(tps, replies, strict=True)}


def start_worker(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, **worker_environment(settings), "STREAM_WEB_PORT": str(port)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    return proc, port


async def wait_ready(port: int, proc: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited during start-up")
        if await asyncio.to_thread(worker_ready, f"http://127.0.0.1:{port}", 1.0):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("worker not ready")


class WorkerLoopTotals(NamedTuple):
    """What the worker's batch loop reports of itself on ``/metrics``, since it started."""

    records: float  # folded into batches (the batch-size histogram's sum)
    batches: float
    redis_wait_s: float  # waiting for the Redis pipeline in flight instead of folding


async def worker_loop_totals(port: int, settings: Settings) -> WorkerLoopTotals:
    """Scrape the worker's own totals: the bench's mean batch and Redis wait come from them."""
    # Imported here: web_auth brings faust and aiohttp, which `stream engine-profile` (it
    # imports this module) would otherwise load and count as its own set-up.
    from stream.service.web_auth import load_token

    url = f"http://127.0.0.1:{port}/metrics"
    samples = await asyncio.to_thread(scrape, url, load_token(settings), 30.0)
    name = "stream_batch_size_events"
    return WorkerLoopTotals(
        total(samples, f"{name}_sum"),
        total(samples, f"{name}_count"),
        total(samples, "stream_redis_wait_seconds_total"),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_caught_up(
    client: Any, settings: Settings, ends: dict[TopicPartition, int], limit_s: float = 900
) -> float:
    started = time.perf_counter()
    targets = {tp: end - 1 for tp, end in ends.items() if end > 0}
    while True:
        stored = await stored_offsets(client, settings, targets)
        if all(stored[tp] >= off for tp, off in targets.items()):
            return time.perf_counter()
        if time.perf_counter() - started > limit_s:
            raise TimeoutError("pipeline did not catch up")
        await asyncio.sleep(0.005)


async def latency_phase(
    client: Any, settings: Settings, rate: float, seconds: float, users: int, mix: frozenset[Family]
) -> list[float]:
    """Produce fresh events at ``rate`` and time each sampled one until visible in Redis."""
    topics = settings.topics.by_family()
    sim = Simulator(SimulationConfig(seed=99, users=users))
    source = (ev for ev in sim.events() if ev.family in mix)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks=1, linger_ms=1
    )
    await producer.start()
    pending: list[tuple[TopicPartition, int, float]] = []
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set() or pending:
            if pending:
                watched = list(pending)  # the producer side appends while we await Redis
                stored = await stored_offsets(client, settings, {tp for tp, _, _ in watched})
                now = time.perf_counter()
                seen = set()
                for item in watched:
                    tp, off, sent = item
                    if stored.get(tp, -1) >= off:
                        latencies.append(now - sent)
                        seen.add(item)
                pending[:] = [item for item in pending if item not in seen]
            await asyncio.sleep(0.002)

    poller = asyncio.create_task(poll())
    started = time.perf_counter()
    sent = 0
    chunk = max(1, int(rate / 100))  # send in 10 ms slices
    try:
        while time.perf_counter() - started < seconds:
            futures = []
            now_ms = int(time.time() * 1000)
            for _ in range(chunk):
                ev = next(source)
                body = dict(ev.event)
                body["ts"] = now_ms
                futures.append(
                    (
                        time.perf_counter(),
                        await producer.send(
                            topics[ev.family], orjson.dumps(body), key=body["user_id"].encode()
                        ),
                    )
                )
                sent += 1
            for i, (t_sent, fut) in enumerate(futures):
                if i % 10 == 0:
                    md = await fut
                    pending.append((TopicPartition(md.topic, md.partition), md.offset, t_sent))
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        done.set()
        await asyncio.wait_for(poller, 60)
        await producer.stop()
    return latencies


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_bench(
    base: Settings,
    *,
    events: int,
    users: int,
    partitions: int,
    mix: str,
    latency_seconds: float,
    seed: int,
    redis_cluster: int = 0,
) -> BenchResult:
    """``redis_cluster`` N > 0: the store is a local Redis Cluster of N primaries (no replicas:
    the bench measures the primaries' work), unless REDIS_URL names a store already."""
    families = MIXES[mix]
    result = BenchResult(
        events=events,
        mix=mix,
        users=users,
        partitions=partitions,
        sessions=base.sessions_enabled,
        score=base.score.enabled,
    )
    cluster = None
    if redis_cluster and not base.redis_url:
        cluster = LocalRedisCluster(primaries=redis_cluster, replicas=0).start()
        base = base.with_overrides(redis_url=cluster.url, redis_cluster=True)
    settings, stack = with_infrastructure(base)
    tag = f"bench{int(time.time())}"
    settings = bench_settings(settings, tag, partitions)
    workdir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    client = store.connect(redis_target(settings))
    proc = None
    try:
        await ensure_topics(settings)
        print(
            f"generating {events:,} simulated events ({mix} mix, {users:,} users)…", file=sys.stderr
        )
        data = simulated(events, users, families, seed)
        distinct_users = len({key for _, key, _ in data})
        result.event_time_span_hours = event_time_span_ms(data) / 3_600_000
        t0 = time.perf_counter()
        produced = await produce(settings, data)
        result.produce_events_per_s = produced / (time.perf_counter() - t0)
        del data
        print(
            f"produced {produced:,} at {result.produce_events_per_s:,.0f}/s; raw loop…",
            file=sys.stderr,
        )
        result.raw_loop_events_per_s = await raw_loop(settings, produced)
        ends = await log_ends(settings)
        mem_before = await redis_used_memory(client)
        print("pipeline (one worker process)…", file=sys.stderr)
        proc, port = start_worker(settings, workdir / "worker.log")
        await wait_ready(port, proc)
        ready = time.perf_counter()
        cpu_ready = cpu_seconds(proc.pid)
        redis_ready = await redis_cpu_seconds(client)
        functions_ready = await redis_function_seconds(client)
        finished = await wait_caught_up(client, settings, ends)
        worker_cpu = cpu_seconds(proc.pid) - cpu_ready
        redis_done = await redis_cpu_seconds(client)
        functions_done = await redis_function_seconds(client)
        # Scraped only now: /metrics also renders the business gauges, reading Redis in many
        # round trips, work that must not count in the catch-up's worker or Redis CPU. The
        # worker's batches so far are the catch-up's (any before it was seen ready included).
        loop = await worker_loop_totals(port, settings)
        result.mean_batch_records = loop.records / max(loop.batches, 1)
        result.worker_redis_wait_share = loop.redis_wait_s / (finished - ready)
        result.redis_function_us_per_event = (functions_done - functions_ready) / produced * 1e6
        per_node = {
            n: (redis_done[n] - redis_ready.get(n, 0.0)) / produced * 1e6 for n in redis_done
        }
        result.redis_cpu_us_per_event = sum(per_node.values())
        result.redis_cpu_us_per_event_by_primary = per_node
        result.worker_cpu_us_per_event = worker_cpu / produced * 1e6
        result.worker_busy_share = worker_cpu / (finished - ready)
        result.worker_events_per_s = produced / (finished - ready)
        result.ratio_to_raw = result.worker_events_per_s / result.raw_loop_events_per_s
        mem_after = await redis_used_memory(client)
        result.active_users = distinct_users
        result.redis_bytes_per_active_user = (mem_after - mem_before) / max(distinct_users, 1)
        result.open_sessions, result.redis_bytes_per_open_session = await open_session_memory(
            client, settings
        )
        result.scored_customers, result.redis_bytes_per_scored_customer = await customer_memory(
            client, settings
        )
        rate = result.worker_events_per_s / 2
        result.latency_rate_events_per_s = rate
        print(f"latency at {rate:,.0f} events/s for {latency_seconds:.0f}s…", file=sys.stderr)
        lat = await latency_phase(client, settings, rate, latency_seconds, users, families)
        result.latency_samples = len(lat)
        result.latency_p50_s = statistics.median(lat) if lat else float("nan")
        result.latency_p99_s = _percentile(lat, 0.99)
        result.worker_peak_rss_mb = peak_rss_mb(proc.pid)
        result.notes.append(f"worker log: {workdir / 'worker.log'}")
        return result
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await client.aclose()
        if stack is not None:
            stack.stop()
        if cluster is not None:
            cluster.stop()


async def open_session_memory(client: Any, settings: Settings) -> tuple[int, float]:
    """Open sessions and the Redis bytes their state takes (hash + due set) per session."""
    keys = build_keys(settings)
    sessions = 0
    used = 0
    for partition in range(settings.topic_partitions):
        shard = keys.shard(Family.CLICKSTREAM.value, partition)
        name = SessionState.name
        used += await _keys_memory(client, [keys.keyed(shard, name), keys.keyed_due(shard, name)])
        async for _, value in client.hscan_iter(keys.keyed(shard, SessionState.name), count=1000):
            sessions += value.count(b";") + 1
    return sessions, used / max(sessions, 1)


async def _keys_memory(client: Any, keys: list[str]) -> int:
    return sum([int(await client.memory_usage(k, samples=0) or 0) for k in keys])


async def customer_memory(client: Any, settings: Settings) -> tuple[int, float]:
    """Scored customers and the Redis bytes per customer of everything the score keeps
    (state hash with the pending records after the values, due set, at-risk ranking, totals,
    outbox)."""
    keys = build_keys(settings)
    customers = 0
    used = 0
    for partition in range(settings.topic_partitions):
        shard = keys.shard(Family.CLICKSTREAM.value, partition)
        used += await _keys_memory(
            client,
            [
                keys.keyed(shard, SCORE_STATE),
                keys.keyed_due(shard, SCORE_STATE),
                keys.zset(shard, AT_RISK_SET),
                keys.totals(shard, TOTALS),
                keys.outbox(shard, OUTBOX),
            ],
        )
        customers += int(await client.hlen(keys.keyed(shard, SCORE_STATE)))
    return customers, used / max(customers, 1)


async def _per_primary_info(client: store.RedisClient, section: str) -> dict[str, dict[str, Any]]:
    """INFO ``section`` of each primary (one entry, ``redis``, for a single node)."""
    if not isinstance(client, RedisCluster):
        return {"redis": await client.info(section)}
    return {
        node.name: await client.info(section, target_nodes=node) for node in client.get_primaries()
    }


async def redis_cpu_seconds(client: store.RedisClient) -> dict[str, float]:
    """CPU seconds (user + system, every thread) each primary has used so far."""
    return {
        name: float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        for name, info in (await _per_primary_info(client, "cpu")).items()
    }


async def redis_function_seconds(client: store.RedisClient) -> float:
    """Seconds every primary has spent inside ``FCALL`` so far (``INFO commandstats``): the
    engine's apply and keyed reads. Only FCALL: the commands a function calls are counted again
    under their own names, so summing every entry would count them twice."""
    usec = await redis_command_usec(client)
    return sum(v for command, v in usec.items() if command.startswith("fcall")) / 1e6


async def redis_command_usec(client: store.RedisClient) -> dict[str, int]:
    """Microseconds each command has taken so far (``INFO commandstats``), summed over the
    primaries: ``fcall``, ``fcall_ro``, and the commands the functions call, each under its own
    name (``hset``, ``pfadd``, …)."""
    total: dict[str, int] = {}
    for stats in (await _per_primary_info(client, "commandstats")).values():
        for name, entry in stats.items():
            command = name.removeprefix("cmdstat_")
            total[command] = total.get(command, 0) + int(entry["usec"])
    return total


async def redis_used_memory(client: store.RedisClient) -> int:
    """Bytes every primary holds, together."""
    return sum(int(i["used_memory"]) for i in (await _per_primary_info(client, "memory")).values())


def event_time_span_ms(data: Iterable[tuple[Family, bytes, bytes]]) -> int:
    """Latest minus earliest event time of the events."""
    times = [int(orjson.loads(value)["ts"]) for _, _, value in data]
    return max(times) - min(times) if times else 0
