"""How long a worker's death stops its partitions: ``python -m stream.tools.handover``.

Two real ``stream worker`` processes share the clickstream topic's partitions while a producer
keeps every partition busy. At each kill (SIGKILL, as an OOM kill or a lost node does it) the
stored offsets of all partitions are noted; the *handover time* is how long until every one of
them has moved past that mark again, i.e. until the dead worker's partitions are applied by the
survivor. The killed worker is then restarted and the group settles before the next kill, so
each kill starts from the same two-worker state. Graceful stops (SIGTERM) are measured the same
way: the worker leaves the group, which rebalances at once.

Nothing here is a test: the figures depend on the machine and the broker's group timings.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from stream.config.settings import Settings
from stream.engine import store
from stream.infra.connections import redis_target
from stream.infra.runtime import with_infrastructure
from stream.infra.topics import ensure_topics
from stream.tools.bench import bench_settings, start_worker, stored_offsets, wait_ready
from stream.tools.publish import BatchPublisher

__all__ = ["measure_handover"]

RATE = 400  # events/s, spread over every partition: enough to see each move, little CPU


async def _produce(settings: Settings, stop: asyncio.Event) -> None:
    topic = settings.topics.clickstream
    async with BatchPublisher(settings.kafka_bootstrap_servers) as pub:
        for i in itertools.count():
            if stop.is_set():
                break
            user = f"u{i % 997}"
            body = {
                "event_id": f"h{i}",
                "type": "page_view",
                "ts": int(time.time() * 1000),
                "user_id": user,
                "properties": {"page": "/"},
            }
            await pub.send(topic, user.encode(), orjson.dumps(body))
            if i % 20 == 0:
                await pub.flush()
                await asyncio.sleep(20 / RATE)
        await pub.flush()


async def _all_moved(
    client: Any, settings: Settings, marks: dict[TopicPartition, int], limit_s: float
) -> float:
    """Seconds until every partition's stored offset is past its mark."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        now = await stored_offsets(client, settings, marks)
        if all(now[tp] > off for tp, off in marks.items()):
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"partitions not applied again within {limit_s} s")


async def measure_handover(base: Settings, kills: int, how: str) -> list[float]:
    settings, stack = with_infrastructure(base)
    settings = bench_settings(settings, f"handover{int(time.time())}", 8)
    workdir = Path(tempfile.mkdtemp(prefix="stream-handover-"))
    client = store.connect(redis_target(settings))
    tps = [TopicPartition(settings.topics.clickstream, p) for p in range(8)]
    stop = asyncio.Event()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(settings)
        producer = asyncio.create_task(_produce(settings, stop))
        for _ in range(2):
            proc, port = start_worker(settings, workdir / f"worker-{len(workers)}.log")
            workers.append(proc)
            await wait_ready(port, proc)
        await asyncio.sleep(5)  # both in the group, every partition moving
        await _all_moved(client, settings, await stored_offsets(client, settings, tps), 60)
        took = []
        for k in range(kills):
            victim = workers.pop(0)
            marks = await stored_offsets(client, settings, tps)
            victim.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
            took.append(await _all_moved(client, settings, marks, 120))
            victim.wait(timeout=30)
            print(f"{how} {k + 1}: every partition applied again after {took[-1]:.1f} s")
            proc, port = start_worker(settings, workdir / f"worker-r{k}.log")
            workers.append(proc)
            await wait_ready(port, proc)
            await asyncio.sleep(8)  # the newcomer's rebalance settles
            await _all_moved(client, settings, await stored_offsets(client, settings, tps), 60)
        stop.set()
        await producer
        return took
    finally:
        stop.set()
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await client.aclose()
        if stack is not None:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--how", choices=["kill", "term"], default="kill")
    args = parser.parse_args()
    took = asyncio.run(measure_handover(Settings(), args.kills, args.how))
    print(
        f"handover after {args.how}: median {statistics.median(took):.1f} s, "
        f"max {max(took):.1f} s over {len(took)} ({', '.join(f'{t:.1f}' for t in took)})"
    )


if __name__ == "__main__":
    main()
