"""The only owner of delivery semantics: apply a partition's batch and advance its offset.

One Redis round trip per consumer batch: every partition's ``FCALL es_apply_v1`` goes into one
pipeline (not a MULTI: each call is atomic on its own, and a refused one must not undo the rest).
Redis is the source of truth for progress; Kafka's committed offsets only follow it for lag
monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from stream.engine import relay
from stream.engine.keys import Keys
from stream.engine.placement import Placement

__all__ = [
    "FUNCTION_NAME",
    "READ_KEYED_FUNCTION",
    "READ_KEYED_SPLIT_FUNCTION",
    "RETRYABLE",
    "ApplyOutcome",
    "FcallAwareCluster",
    "KeyedRead",
    "PartitionProgress",
    "PendingCall",
    "PlacementMismatch",
    "RedisClient",
    "RedisTarget",
    "apply_calls",
    "apply_then_read",
    "check_placement",
    "connect",
    "function_source",
    "load_function",
    "read_keyed",
    "read_progress",
    "register_shards",
    "stored_placement",
]

FUNCTION_NAME = "es_apply_v1"
READ_KEYED_FUNCTION = "es_read_keyed_v2"
READ_KEYED_SPLIT_FUNCTION = "es_read_keyed_split_v2"


def function_source() -> str:
    return resources.files("stream.engine").joinpath("apply.lua").read_text()


@dataclass(frozen=True)
class RedisTarget:
    """A Redis URL plus the credentials and TLS files kept out of it (URLs end up in logs)."""

    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: The URL names one node of a Redis Cluster (any node: the client discovers the rest).
    cluster: bool = False


class FcallAwareCluster(RedisCluster):
    """redis-py's asyncio cluster client, routing ``FCALL`` by its declared keys.

    redis-py reads the keys of ``EVAL``/``EVALSHA`` from the arguments but asks a node for those
    of ``FCALL`` (``COMMAND GETKEYS`` with the whole call, twice per call in a pipeline). Our
    calls carry a batch — hundreds of kilobytes — so every apply crossed the network three
    times: measured as ~1.2x the Redis CPU per event of one node and ~0.73x the worker's
    events/s on 3 primaries. ``FCALL name numkeys key…`` declares its keys like ``EVAL``.
    """

    async def _determine_slot(self, command: str, *args: Any) -> int:
        name = command.upper() if isinstance(command, str) else command.decode().upper()
        if name in ("FCALL", "FCALL_RO") and len(args) >= 2:
            keys = args[2 : 2 + int(args[1])]
            slots = {self.keyslot(key) for key in keys}
            if len(slots) == 1:
                return slots.pop()
        return await super()._determine_slot(command, *args)


#: A single Redis or a Redis Cluster: every key one input partition writes carries the
#: partition's hash tag, so each batch's apply and keyed read go to the primary of one slot.
RedisClient = aioredis.Redis | RedisCluster

#: What a Redis outage or a cluster in transition looks like: wait and try again. The cluster's
#: own errors come first because some of them are also ResponseErrors.
RETRYABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ClusterDownError,  # no quorum, a slot without a primary (failover)
    redis.exceptions.TryAgainError,  # a slot in migration (resharding)
    redis.exceptions.ClusterError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.RedisClusterException,  # e.g. no node reachable to refresh the slot map
    OSError,
)


def connect(target: str | RedisTarget) -> RedisClient:
    """The project's Redis client. Bytes in, bytes out; decoding is the caller's business.

    Credentials written in the URL win over the target's fields (redis-py's precedence). With
    ``cluster`` it is redis-py's asyncio cluster client, which follows MOVED/ASK redirections
    and refreshes its slot map after a failover.
    """
    t = RedisTarget(target) if isinstance(target, str) else target
    options: dict[str, Any] = {}
    if t.username:
        options["username"] = t.username
    if t.password:
        options["password"] = t.password
    tls_files = {
        "ssl_ca_certs": t.tls_ca_file,
        "ssl_certfile": t.tls_cert_file,
        "ssl_keyfile": t.tls_key_file,
    }
    if t.url.startswith("rediss://"):
        options.update({k: v for k, v in tls_files.items() if v}, ssl_cert_reqs="required")
    elif any(tls_files.values()):
        raise ValueError("Redis TLS files are set but the URL is not rediss://")
    if t.cluster:
        return FcallAwareCluster.from_url(
            t.url,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=15,
            # A failover takes a cluster-node-timeout or two: the engine's own retry loop waits
            # it out, so one client-level retry round is enough.
            cluster_error_retry_attempts=3,
            **options,
        )
    return aioredis.Redis.from_url(
        t.url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=15, **options
    )


async def load_function(client: RedisClient) -> None:
    """Load (or replace) the library; on a cluster, on every primary (FUNCTION LOAD's default
    target there), because each partition's apply runs on the primary that owns its slot."""
    await client.function_load(function_source(), replace=True)


@dataclass(frozen=True)
class PartitionProgress:
    """Stored position of one input partition: last applied offset (-1: none) and max ts, and
    on a home shard the highest relay seq applied per source shard (stream/engine/relay.py)."""

    offset: int
    max_ts: int
    relay_hw: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyOutcome:
    shard: str
    applied: bool
    stored: PartitionProgress | None  # set when refused: where the partition really is


@dataclass(frozen=True)
class PendingCall:
    shard: str
    keys: list[str]
    argv: list[str | int | bytes]


async def read_progress(client: RedisClient, keys: Keys, shard: str) -> PartitionProgress:
    """One consistent snapshot of a partition's progress (the state hash is a few fields)."""
    raw = await client.hgetall(keys.state(shard))
    state = {(f.decode() if isinstance(f, bytes) else f): v for f, v in raw.items()}
    return PartitionProgress(
        int(state.get("offset", -1)),
        int(state.get("max_ts", -1)),
        relay.hw_from_state(state),
    )


async def read_offsets(client: RedisClient, keys: Keys, shards: list[str]) -> list[int]:
    """Each shard's stored offset (-1: none), in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.hget(keys.state(shard), "offset")
        replies = await pipe.execute()
    return [-1 if v is None else int(v) for v in replies]


async def apply_calls(client: RedisClient, calls: list[PendingCall]) -> list[ApplyOutcome]:
    """Run every partition's apply in one round trip; report which were refused as stale."""
    outcomes, _ = await apply_then_read(client, calls, [])
    return outcomes


async def apply_then_read(
    client: RedisClient, calls: list[PendingCall], reads: list[KeyedRead]
) -> tuple[list[ApplyOutcome], list[dict[str, Any]]]:
    """One batch's applies, then the next batch's keyed reads, in one pipeline.

    One pipeline is one connection, and Redis runs a connection's commands in order: the reads
    see the applies' effects, as the next batch's settle requires.
    """
    if not calls and not reads:
        return [], []
    async with client.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.fcall(FUNCTION_NAME, len(call.keys), *call.keys, *call.argv)
        for r in reads:
            function = READ_KEYED_SPLIT_FUNCTION if r.split else READ_KEYED_FUNCTION
            fields = msgspec.msgpack.encode(r.fields)  # one argument: see es_read_keyed_v2
            pipe.fcall_ro(function, 2, r.state_key, r.due_key, r.due_until, r.limit, fields)
        replies = await pipe.execute()
    outcomes = []
    for call, reply in zip(calls, replies[: len(calls)], strict=True):
        if int(reply[0]) == 1:
            outcomes.append(ApplyOutcome(call.shard, True, None))
        else:
            outcomes.append(
                ApplyOutcome(call.shard, False, PartitionProgress(int(reply[1]), int(reply[2])))
            )
    return outcomes, _keyed_values(reads, replies[len(calls) :])


@dataclass(frozen=True)
class KeyedRead:
    """Open keyed state one partition's batch needs: the fields it touches and what is due."""

    state_key: str
    due_key: str
    fields: list[str]
    due_until: int
    limit: int
    #: the state keeps pending records after its values (apply.lua op A): values are then
    #: (stored value, pending record) pairs
    split: bool = False


async def read_keyed(client: RedisClient, reads: list[KeyedRead]) -> list[dict[str, Any]]:
    """All reads of a batch in one round trip (read-only function calls, pipelined).

    Per read: field -> stored value (str or None), or with ``split`` -> (stored value,
    pending record as a list or None). Values stay the str that MessagePack gives: every
    state's settle parses str, and encoding them to bytes here cost a copy a field.
    """
    _, values = await apply_then_read(client, [], reads)
    return values


def _keyed_values(reads: list[KeyedRead], replies: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r, reply in zip(reads, replies, strict=True):
        # apply.lua packs Lua strings as MessagePack str (fields are hex, values UTF-8 text),
        # and a missing value as false: str or None here.
        flat = msgspec.msgpack.decode(reply)
        it = iter(flat)
        if r.split:
            out.append({f: (v or None, p or None) for f, v, p in zip(it, it, it, strict=True)})
            continue
        out.append({f: v or None for f, v in zip(it, it, strict=True)})
    return out


async def register_shards(client: RedisClient, keys: Keys, shards: list[str]) -> None:
    if shards:
        await client.sadd(keys.shards, *shards)


class PlacementMismatch(RuntimeError):
    """The store's keys are placed differently from this process's setting."""


async def stored_placement(client: RedisClient, keys: Keys) -> Placement | None:
    """The placement the store's keys were written with; ``None`` for an empty store.

    A store with shards but no marker was written before placements were recorded, with the
    plain ``{family.partition}`` tags.
    """
    raw = await client.get(keys.placement_marker)
    if raw is not None:
        return Placement(raw.decode() if isinstance(raw, bytes) else raw)
    if await client.scard(keys.shards):
        return Placement.PARTITION
    return None


async def check_placement(client: RedisClient, keys: Keys) -> None:
    """Refuse to run on keys placed differently, and record the placement of a new store.

    A worker writing ``spread`` tags into a store that holds ``partition`` tags would not see
    its partitions' progress: it would start every partition from the beginning of its log next
    to the old state, and every read would mix the two. Moving keys between placements is an
    offline step (``stream store migrate``), so the worker stops with that advice instead.
    """
    found = await stored_placement(client, keys)
    if found is None:
        # A new store: the first worker records its placement (a concurrent first worker with
        # another setting loses the race and is refused below).
        await client.set(keys.placement_marker, keys.placement.value, nx=True)
        found = await stored_placement(client, keys)
    if found is not keys.placement:
        raise PlacementMismatch(
            f"the Redis store's keys use the {found} placement, this process is set to "
            f"{keys.placement}: stop every worker and run `stream store migrate --to "
            f"{keys.placement} --apply`, or set STREAM_REDIS_PLACEMENT={found}"
        )
    await client.set(keys.placement_marker, found.value)
