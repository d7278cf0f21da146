"""How long a quarter's distinct count takes to read: ``python -m stream.tools.calendar_read``.

Fills a scratch Redis (one node, then a 3-primary cluster, both started here) with a quarter of
day HyperLogLogs per shard (20,000 users a day out of 200,000, split over the partitions) and
times the read side's union of them, as ``active_users?granularity=quarter`` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import tempfile
import time
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from stream.engine.fold import ACTIVE_SET
from stream.engine.keys import Keys
from stream.engine.store import RedisClient
from stream.engine.windows import Windows
from stream.infra.localstack import find_redis_server, free_port
from stream.infra.redis_cluster import LocalRedisCluster
from stream.metrics.reader import Reader

USERS, USERS_PER_DAY = 200_000, 20_000


async def time_quarter(client: RedisClient, partitions: int, label: str) -> str:
    keys = Keys("calendar-read")
    windows = Windows(ZoneInfo("UTC"))
    quarter = windows.start_of("quarter", time.time())
    days = windows.days_in("quarter", quarter)
    shards = [f"clickstream.{p}" for p in range(partitions)]
    rng = random.Random(1)
    async with client.pipeline(transaction=False) as pipe:
        for day in days:
            users = rng.sample(range(USERS), USERS_PER_DAY)
            for i, shard in enumerate(shards):
                mine = [f"u{u}" for u in users if u % partitions == i]
                pipe.pfadd(keys.users(shard, "d", day, ACTIVE_SET), *mine)
        await pipe.execute()
    reader = Reader(client, keys, windows)
    seconds = []
    for _ in range(5):
        t0 = time.perf_counter()
        (count,) = await reader.distinct(shards, "quarter", [[quarter]], [ACTIVE_SET])
        seconds.append(time.perf_counter() - t0)
    return (
        f"{label}: {len(days)} days x {partitions} shards = {len(days) * partitions} "
        f"HyperLogLogs, {count} distinct, read in {sorted(seconds)[2] * 1000:.0f} ms "
        f"(median of 5)"
    )


async def _one_node(port: int, partitions: int) -> str:
    client = aioredis.Redis(port=port)
    try:
        for _ in range(50):
            try:
                await client.ping()
                break
            except OSError:
                await asyncio.sleep(0.1)
        return await time_quarter(client, partitions, "one node")
    finally:
        await client.aclose()


async def _cluster(url: str, partitions: int) -> str:
    client = RedisCluster.from_url(url)
    try:
        return await time_quarter(client, partitions, "Redis Cluster, 3 primaries")
    finally:
        await client.aclose()


def main(partitions: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        try:
            print(asyncio.run(_one_node(port, partitions)))
        finally:
            server.terminate()
            server.wait()
    with LocalRedisCluster(primaries=3, replicas=0) as cluster:
        print(asyncio.run(_cluster(cluster.url, partitions)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, default=16)
    main(parser.parse_args().partitions)
