"""Read primitives over the sharded window keys: sum counters, merge distinct-count sets.

Every aggregate is spread over the input-partition shards that wrote it (see
:mod:`stream.engine.keys`), so reads fan out over shards in one pipeline and combine: counters
add up; HyperLogLogs merge through a multi-key PFCOUNT (a union, so a user seen by two shards
is counted once) — on a Redis Cluster over copies gathered into one slot, since each shard's
keys live in a slot of their own.

Calendar periods (week, month, quarter) are read as the union of their local days: counters and
histograms add up over the days, distinct counts merge every day's HyperLogLogs (a month's
active users, never a sum of daily ones). So a period's ratio has the period's own numerator and
denominator, and its median comes from the merged histogram.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from redis.asyncio.cluster import RedisCluster

from stream.engine.keys import Keys
from stream.engine.store import RedisClient
from stream.engine.windows import CALENDAR_GRANULARITIES, GRANULARITY_CODE, Windows

# A multi-key PFCOUNT merges its keys into a temporary HLL per call; a query that would need
# more keys than this in one count is refused rather than split (a split would count twice).
_PFCOUNT_CHUNK = 8192
#: How long a cluster read's merge copies may outlive it (they are deleted right away).
_MERGE_COPY_TTL_MS = 60_000


class QueryError(ValueError):
    """A bad or too large query (the API answers 400 with the message)."""


__all__ = ["QueryError", "Reader", "SnapshotReader"]


class Reader:
    def __init__(self, client: RedisClient, keys: Keys, windows: Windows | None = None) -> None:
        self.client = client
        self.keys = keys
        #: Where calendar periods are cut (the deployment's zone and first weekday).
        self.windows = windows or Windows(ZoneInfo("UTC"))

    def snapshot(self) -> SnapshotReader:
        """A reader for one scrape: each stored key is read once however many specs need it."""
        return SnapshotReader(self.client, self.keys, self.windows)

    def stored(self, granularity: str, start: int) -> tuple[str, list[int]]:
        """The stored windows (granularity code, starts) a window is read from."""
        if granularity in CALENDAR_GRANULARITIES:
            return GRANULARITY_CODE["day"], self.windows.days_in(granularity, start)
        return GRANULARITY_CODE[granularity], [start]

    async def shards(self, families: Iterable[str] | None = None) -> list[str]:
        """The shards that exist (sorted), or those of some families."""
        shards = await self._all_shards()
        if families is None:
            return list(shards)
        wanted = set(families)
        return [s for s in shards if s.rsplit(".", 1)[0] in wanted]

    async def _all_shards(self) -> list[str]:
        members = await self.client.smembers(self.keys.shards)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def counters(
        self, shards: list[str], granularity: str, starts: list[int]
    ) -> list[dict[str, int]]:
        """For each window start: every counter field summed over ``shards``."""
        groups = []
        for start in starts:
            code, stored = self.stored(granularity, start)
            groups.append([self.keys.counters(shard, code, s) for s in stored for shard in shards])
        return await self._summed(groups)

    async def hashes(
        self, shards: list[str], granularity: str, starts: list[int], name: str
    ) -> list[dict[str, int]]:
        """For each window start: a per-window metric hash (``x`` keys) summed over shards."""
        groups = []
        for start in starts:
            code, stored = self.stored(granularity, start)
            groups.append(
                [self.keys.extra(shard, code, s, name) for s in stored for shard in shards]
            )
        return await self._summed(groups)

    async def totals(self, shards: list[str], name: str) -> dict[str, int]:
        """A running-total hash (never windowed) summed over shards."""
        (total,) = await self._summed([[self.keys.totals(shard, name) for shard in shards]])
        return total

    async def total_field(self, shards: list[str], name: str, field: str) -> int:
        """One field of a running-total hash, summed over shards (one round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.hget(self.keys.totals(shard, name), field)
            replies = await pipe.execute()
        return sum(int(v) for v in replies if v is not None)

    async def _hashes(self, keys: list[str]) -> list[dict[bytes, bytes]]:
        """HGETALL every key in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        return replies

    async def _summed(self, key_groups: list[list[str]]) -> list[dict[str, int]]:
        """Sum the integer fields of each group of hashes."""
        replies = iter(await self._hashes([key for group in key_groups for key in group]))
        out: list[dict[str, int]] = []
        for group in key_groups:
            total: dict[str, int] = {}
            for _ in group:
                for f, v in next(replies).items():
                    name = f.decode()
                    total[name] = total.get(name, 0) + int(v)
            out.append(total)
        return out

    async def distinct(
        self,
        shards: list[str],
        granularity: str,
        window_groups: list[list[int]],
        set_names: list[str],
    ) -> list[int]:
        """For each group of window starts: distinct members of the union of the named sets."""
        groups: list[list[str]] = []
        for starts in window_groups:
            keys = [
                self.keys.users(shard, code, s, name)
                for start in starts
                for code, stored in (self.stored(granularity, start),)
                for s in stored
                for shard in shards
                for name in set_names
            ]
            if len(keys) > _PFCOUNT_CHUNK:
                raise QueryError(
                    f"a distinct count over {len(keys)} windows × partitions is more than "
                    f"{_PFCOUNT_CHUNK}; narrow the time range or use a coarser granularity"
                )
            groups.append(keys)
        if isinstance(self.client, RedisCluster):
            return await self._union_counts_in_one_slot(groups)
        async with self.client.pipeline(transaction=False) as pipe:
            for keys in groups:
                if keys:
                    pipe.pfcount(*keys)
            replies = iter(await pipe.execute())
        return [int(next(replies)) if keys else 0 for keys in groups]

    async def _union_counts_in_one_slot(self, groups: list[list[str]]) -> list[int]:
        """Distinct counts of unions of HyperLogLogs that live in different cluster slots.

        A multi-key PFCOUNT must name keys of one slot, and each input partition's keys have
        their own. An HLL is a Redis string, so its value is fetched (GET) and copied under one
        hash tag, where PFCOUNT merges the copies' registers exactly as it merges the originals
        on a single node: the same answer on both topologies. The copies expire on their own
        should this reader die before deleting them.
        """
        distinct_keys = list(dict.fromkeys(k for keys in groups for k in keys))
        if not distinct_keys:
            return [0] * len(groups)
        async with self.client.pipeline(transaction=False) as pipe:
            for key in distinct_keys:
                pipe.get(key)
            values = dict(zip(distinct_keys, await pipe.execute(), strict=True))
        tag = f"{self.keys.prefix}:{{merge.{uuid.uuid4().hex}}}"
        copies = {key: f"{tag}:{i}" for i, key in enumerate(k for k in distinct_keys if values[k])}
        async with self.client.pipeline(transaction=False) as pipe:
            for key, copy in copies.items():
                pipe.set(copy, values[key], px=_MERGE_COPY_TTL_MS)
            counted: list[bool] = []
            for keys in groups:
                present = [copies[k] for k in keys if k in copies]
                counted.append(bool(present))
                if present:
                    # execute_command: redis-py refuses multi-key commands by name in a cluster
                    # pipeline, though these keys share one slot
                    pipe.execute_command("PFCOUNT", *present)
            if copies:
                pipe.execute_command("DEL", *copies.values())
            replies = await pipe.execute()
        counts = iter(replies[len(copies) :])
        return [int(next(counts)) if c else 0 for c in counted]


class SnapshotReader(Reader):
    """Memoizes what one scrape reads: the shard list, each hash, each distinct count.

    The exporter evaluates every spec on its own (one definition per metric); this keeps that
    from reading a window's counters once per spec.
    """

    def __init__(self, client: RedisClient, keys: Keys, windows: Windows | None = None) -> None:
        super().__init__(client, keys, windows)
        self._shards: list[str] | None = None
        self._hash_cache: dict[str, dict[bytes, bytes]] = {}
        self._distinct_cache: dict[tuple[object, ...], list[int]] = {}

    async def _all_shards(self) -> list[str]:
        if self._shards is None:
            self._shards = await super()._all_shards()
        return self._shards

    async def _hashes(self, keys: list[str]) -> list[dict[bytes, bytes]]:
        missing = list(dict.fromkeys(k for k in keys if k not in self._hash_cache))
        if missing:
            self._hash_cache.update(zip(missing, await super()._hashes(missing), strict=True))
        return [self._hash_cache[k] for k in keys]

    async def distinct(
        self,
        shards: list[str],
        granularity: str,
        window_groups: list[list[int]],
        set_names: list[str],
    ) -> list[int]:
        key = (
            tuple(shards),
            granularity,
            tuple(tuple(g) for g in window_groups),
            tuple(set_names),
        )
        cached = self._distinct_cache.get(key)
        if cached is None:
            cached = await super().distinct(shards, granularity, window_groups, set_names)
            self._distinct_cache[key] = cached
        return cached
