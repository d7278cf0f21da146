"""Worker processes under crashes, rebalances and a Redis outage: results stay exact.

Two real ``stream worker`` processes share the consumer group; ≥ 200k simulated events flow
while workers are SIGKILLed and restarted, workers join and leave, or Redis stops for 10 s. At
the end every metric must equal the independent batch reference — nothing lost, nothing
counted twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.config.settings import Settings
from stream.infra.localstack import LocalStack
from stream.tools.simulate import SimulationConfig, Simulator
from tests.support.compare import compare_all
from tests.support.harness import publish_raw, wait_caught_up
from tests.support.reference import Reference, drop_late
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e

EVENTS = 200_000


def simulated_events(count: int, seed: int) -> list[dict[str, Any]]:
    """Simulated traffic shifted to end a minute ago (so nothing is in the future)."""
    sim = Simulator(SimulationConfig(seed=seed, users=3000))
    evs = []
    for ev in sim.events():
        evs.append(ev)
        if len(evs) >= count:
            break
    shift = int(time.time() * 1000) - 60_000 - evs[-1].ts_ms
    out = []
    for ev in evs:
        body = dict(ev.event)
        body["ts"] = ev.ts_ms + shift
        out.append(body)
    return out


async def publish_in_chunks(
    settings: Settings, events: list[dict[str, Any]], chunks: int, between: Any
) -> None:
    from tests.support.harness import topic_for

    size = len(events) // chunks + 1
    for i in range(chunks):
        part = events[i * size : (i + 1) * size]
        by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
        for e in part:
            by_topic.setdefault(topic_for(settings, e), []).append(
                (e["user_id"].encode(), orjson.dumps(e))
            )
        for topic, msgs in by_topic.items():
            await publish_raw(settings, topic, msgs)
        await between(i)


#: One hour of allowed lateness, so that sessions of the ~day-long simulated stream close and
#: are checked too (late events then exist as well: they must be in the DLQ, not counted).
LATENESS_S = 3600.0


async def assert_exact(settings: Settings, events: list[dict[str, Any]]) -> None:
    on_time, _ = drop_late(
        events, settings.topic_partitions, int(settings.allowed_lateness_seconds * 1000)
    )
    ref = Reference.build(on_time, settings)
    assert ref.sessions or settings.allowed_lateness_seconds > LATENESS_S
    problems = await compare_all(settings, ref, granularities=("hour", "day"))
    assert not problems, "\n".join(problems[:30])


async def test_sigkill_restarts_are_exact(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_overrides(allowed_lateness_seconds=LATENESS_S)
    events = simulated_events(EVENTS, seed=11)
    rng = random.Random(5)
    workers = [WorkerProcess(settings, tmp_path, f"w{i}").start() for i in range(2)]
    try:
        for w in workers:
            w.wait_ready()

        async def chaos(i: int) -> None:
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # let it get mid-batch
            victim = rng.randrange(2)
            workers[victim].kill()
            workers[victim] = WorkerProcess(settings, tmp_path, f"w{victim}r{i}").start()

        await publish_in_chunks(settings, events, chunks=4, between=chaos)
        for w in workers:
            w.wait_ready(120)
        await wait_caught_up(settings, timeout=300)
    finally:
        for w in workers:
            w.stop()
    await assert_exact(settings, events)


async def test_rebalance_add_and_remove_worker(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_overrides(allowed_lateness_seconds=LATENESS_S)
    events = simulated_events(EVENTS, seed=12)
    first = WorkerProcess(settings, tmp_path, "first").start()
    extra: list[WorkerProcess] = []
    try:
        first.wait_ready()

        async def churn(i: int) -> None:
            if i == 0:
                extra.append(WorkerProcess(settings, tmp_path, "second").start())
                await asyncio.sleep(2)
            elif i == 2:
                assert extra[0].stop() == 0  # graceful leave mid-stream

        await publish_in_chunks(settings, events, chunks=4, between=churn)
        await wait_caught_up(settings, timeout=300)
    finally:
        first.stop()
        for w in extra:
            w.stop()
    await assert_exact(settings, events)


async def test_redis_outage_is_survived(tmp_path: Path, settings: Settings) -> None:
    with LocalStack(redis_appendonly=True) as own:  # an outage must not disturb other tests
        s = settings.with_overrides(
            kafka_bootstrap_servers=own.kafka_bootstrap, redis_url=own.redis_url
        )
        events = simulated_events(60_000, seed=13)
        worker = WorkerProcess(s, tmp_path).start()
        try:
            worker.wait_ready()

            async def outage(i: int) -> None:
                if i == 1:
                    own.stop_redis()
                    await asyncio.sleep(10)
                    own.start_redis()

            await publish_in_chunks(s, events, chunks=3, between=outage)
            await wait_caught_up(s, timeout=300)
            assert worker.proc is not None and worker.proc.poll() is None, "worker crashed"
            status, text = worker.get("/metrics")
            assert status == 200 and "stream_redis_errors_total" in text
        finally:
            worker.stop()
        await assert_exact(s, events)
