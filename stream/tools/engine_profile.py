"""Where the engine's time goes, phase by phase, without Kafka: ``stream engine-profile``.

``stream bench`` times a whole worker against a real broker; its figure mixes the engine with
aiokafka fetching, asyncio and faust. This runs the engine's own batch path -- the functions
:class:`~stream.engine.consumer.BatchEngine` calls, in the same order and batch shape -- over
simulated records kept in memory, against a real Redis, one phase after the other (no overlap),
so that each phase's time is its own:

* ``fold``: :func:`~stream.engine.fold.fold_records` in slices, duplicate detection on, and
  (other families) turning score inputs into relay messages -- the home side's consumption of
  them is not part of this run (no Kafka);
* ``keyed read``: planning the keyed-state read and the Redis round trip;
* ``settle``: sessions, tickets, subscriptions and scores settled into the deltas;
* ``build``: :func:`~stream.engine.deltas.build_call`;
* ``apply``: the offset-guarded ``FCALL`` round trip.

The worker's CPU per event in ``stream bench`` minus this run's process CPU per event is what
fetching from Kafka and the event loop cost. Figures are µs per event; run on a quiet machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from stream.config.settings import Settings
from stream.config.wiring import (
    build_fold_context,
    build_keyed_states,
    build_keys,
    build_layout,
    build_windows,
    relay_config,
)
from stream.contract.identity import key_partition
from stream.contract.types import Family
from stream.engine import store
from stream.engine.batch import plan_keyed_reads, settle_keyed
from stream.engine.consumer import FOLD_SLICE
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import build_call, build_ops, op_spans
from stream.engine.fold import FoldResult, fold_records
from stream.engine.relay import collect as collect_relay
from stream.infra.connections import redis_target
from stream.infra.runtime import tune_gc, with_infrastructure
from stream.tools.bench import MIXES, redis_command_usec, redis_cpu_seconds, simulated

__all__ = ["PHASES", "Partition", "partitioned", "profile", "run"]

PHASES = ("fold", "keyed read", "settle", "build", "apply")


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """What the fold reads of a Kafka record."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass
class Partition:
    family: str
    shard: str
    records: list[MemoryRecord]
    window: PartitionWindow
    offset: int = -1
    max_ts: int = 0


@dataclass
class Profile:
    events: int = 0
    batches: int = 0
    cpu_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    #: distinct users of the events, and with ``footprint`` the stored bytes by kind of key:
    #: (kind, keys, bytes), largest first
    users: int = 0
    footprint: list[tuple[str, int, int]] = field(default_factory=list)
    #: Redis over the batches, every primary: CPU seconds, and µs by command (INFO
    #: commandstats: ``fcall`` and ``fcall_ro`` include the commands they call, which are also
    #: counted under their own names)
    redis_cpu_s: float = 0.0
    redis_usec: dict[str, int] = field(default_factory=dict)
    #: with ``redis_ops``: op letter -> Redis CPU seconds of that kind of operation alone
    redis_cpu_by_op: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        per = 1e6 / max(self.events, 1)
        lines = [f"{self.events:,} events in {self.batches} batches (engine only, no Kafka)"]
        lines += [f"  {name:<11} {self.phase_s[name] * per:6.2f} µs/event" for name in PHASES]
        lines.append(f"  process CPU {self.cpu_s * per:6.2f} µs/event")
        if self.redis_usec:
            lines += self.redis_report(per)
        if self.footprint:
            total = sum(b for _, _, b in self.footprint)
            users = max(self.users, 1)
            lines.append(
                f"Redis bytes by kind of key ({self.users:,} users; MEMORY USAGE, "
                f"{total / users:,.0f} B per user in all):"
            )
            lines += [
                f"  {kind:<34} {n:>8,} keys {b / users:>8,.0f} B/user {b / total:6.1%}"
                for kind, n, b in self.footprint
            ]
        return "\n".join(lines)

    def redis_report(self, per: float) -> list[str]:
        """Redis's side: its CPU, and within the functions the commands they call and the rest
        (Lua: the ops' decoding and loops, argument conversion). Parsing the requests and
        writing the replies are in the CPU, not in any command's time."""
        usec = self.redis_usec
        apply, read = usec.get("fcall", 0) / 1e6, usec.get("fcall_ro", 0) / 1e6
        called = sorted(
            ((n, s) for n, s in usec.items() if n not in _NOT_CALLED_BY_FUNCTIONS and s > 0),
            key=lambda item: -item[1],
        )
        inner = sum(s for _, s in called) / 1e6
        return [
            "Redis (INFO cpu, commandstats; other clients of this Redis count too):",
            f"  CPU         {self.redis_cpu_s * per:6.2f} µs/event",
            f"  functions   {(apply + read) * per:6.2f} µs/event "
            f"(apply {apply * per:.2f}, keyed read {read * per:.2f})",
            f"    commands  {inner * per:6.2f} µs/event: "
            + ", ".join(f"{n} {s / 1e6 * per:.2f}" for n, s in called[:8]),
            f"    Lua       {(apply + read - inner) * per:6.2f} µs/event",
        ] + [
            f"  {op} {OP_NAMES.get(op, op):<27} {s * per:6.2f} µs/event (CPU, replayed alone)"
            for op, s in sorted(self.redis_cpu_by_op.items(), key=lambda item: -item[1])
        ]


#: apply.lua's operations, by letter.
OP_NAMES = {
    "H": "counters",
    "P": "distinct users (HLL)",
    "Q": "orphan-click pairs",
    "O": "orphan-click pairs (before Q)",
    "K": "keyed state",
    "A": "pending score activity",
    "Z": "rankings",
    "X": "outbox",
}


@dataclass
class CapturedApply:
    """One apply of the run, with its operations before encoding (for ``redis_ops``)."""

    call: store.PendingCall
    ops: list[object]


async def redis_cpu_by_op(
    client: store.RedisClient, prefix: str, applies: Sequence[CapturedApply]
) -> dict[str, float]:
    """Redis CPU seconds of each kind of operation: the run's applies replayed in order, keeping
    one kind of operation at a time, under fresh keys (``<prefix>-<letter>``): the same writes
    as in the run, from the same empty start. The offset guard still runs on every apply."""
    spans = [op_spans(a.ops, int(a.call.argv[3])) for a in applies]
    letters = sorted({op for spans_ in spans for op, _, _ in spans_})
    out: dict[str, float] = {}
    for letter in letters:
        fresh = f"{prefix}-{letter.lower()}"
        before = sum((await redis_cpu_seconds(client)).values())
        for applied, spans_ in zip(applies, spans, strict=True):
            kept = [(a, b) for op, a, b in spans_ if op == letter]
            flat = [x for a, b in kept for x in applied.ops[a:b]]
            argv = list(applied.call.argv)
            argv[3:5] = [len(kept), msgspec.msgpack.encode(flat)]
            keys = [fresh + k.removeprefix(prefix) for k in applied.call.keys]
            outcome = await store.apply_calls(
                client, [store.PendingCall(applied.call.shard, keys, argv)]
            )
            if not outcome[0].applied:
                raise RuntimeError(f"a replay of op {letter} was refused: keys {fresh} in use?")
        out[letter] = sum((await redis_cpu_seconds(client)).values()) - before
    return out


#: Commands in commandstats that no engine function calls: the functions themselves and what
#: this profile or a client library sends around them.
_NOT_CALLED_BY_FUNCTIONS = frozenset(
    {"fcall", "fcall_ro", "info", "hello", "ping", "function|load", "client|setinfo"}
)


def key_kind(key: str) -> str:
    """What a stored key holds, without its shard and window start: ``c:m`` (minute counters),
    ``u:h:active`` (hourly active-user HLLs), ``k:ses`` (open sessions), … (engine/keys.py)."""
    parts = key.split(":")
    kind = parts[2] if len(parts) > 2 else key
    if kind in ("c", "u", "x"):  # P:{shard}:<kind>:<g>:<start>[:<name>]
        return ":".join([kind, parts[3], *parts[5:6]])
    return ":".join([kind, *parts[3:4]])


async def key_footprint(client: store.RedisClient, prefix: str) -> list[tuple[str, int, int]]:
    """MEMORY USAGE of every key of a deployment, summed by :func:`key_kind`."""
    keys: dict[str, int] = {}
    stored: dict[str, int] = {}
    async for raw in client.scan_iter(match=f"{prefix}:*", count=5000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = key_kind(key)
        keys[kind] = keys.get(kind, 0) + 1
        stored[kind] = stored.get(kind, 0) + int(await client.memory_usage(key, samples=0) or 0)
    return sorted(((k, keys[k], stored[k]) for k in keys), key=lambda row: -row[2])


def partitioned(
    settings: Settings, events: int, users: int, mix: str, seed: int, partitions: int
) -> list[Partition]:
    """The simulated events, each family's on its own partitions by the default partitioner."""
    order = {family.value: i for i, family in enumerate(Family)}
    by_shard: dict[tuple[str, int], Partition] = {}
    keys = build_keys(settings)
    for family, key, value in simulated(events, users, MIXES[mix], seed):
        p = key_partition(key, partitions)
        part = by_shard.get((family.value, p))
        if part is None:
            part = by_shard[(family.value, p)] = Partition(
                family.value,
                keys.shard(family.value, p),
                [],
                PartitionWindow(settings.dedupe_window_events),
            )
        part.records.append(MemoryRecord(len(part.records), key, value, 0))
    return sorted(by_shard.values(), key=lambda x: (order[x.family], x.shard))


async def profile(
    settings: Settings,
    parts: Sequence[Partition],
    batch_records: int,
    footprint: bool = False,
    batches: bool = True,
    redis_ops: bool = False,
) -> Profile:
    """``batches`` False: everything but the batch loop (the baseline of an instruction count,
    see ``deploy/local/count-instructions.sh``). ``redis_ops``: also Redis's CPU per kind of
    operation (:func:`redis_cpu_by_op`; the capture is left out of the process CPU)."""
    windows = build_windows(settings)
    keyed_states = build_keyed_states(settings)
    ctx = build_fold_context(settings, windows, keyed_states)
    layout = build_layout(settings, windows)
    keys = build_keys(settings)
    relay = relay_config(settings)
    home = relay.home_family if relay is not None else None
    home_partitions = sum(1 for p in parts if p.family == home) or 1
    client = store.connect(redis_target(settings))
    await store.load_function(client)
    per_partition = max(1, batch_records // max(len(parts), 1))
    out = Profile()
    now_ms = int(time.time() * 1000)
    positions = [0] * len(parts)
    captured: list[CapturedApply] = []
    capture_s = 0.0
    redis_cpu0, redis_usec0 = await redis_cpu_seconds(client), await redis_command_usec(client)
    cpu0 = time.process_time()
    try:
        while batches:
            t0 = time.perf_counter()
            folds: list[tuple[Partition, FoldResult]] = []
            for i, part in enumerate(parts):
                chunk = part.records[positions[i] : positions[i] + per_partition]
                positions[i] += len(chunk)
                result = None
                for j in range(0, len(chunk), FOLD_SLICE):
                    result = fold_records(
                        chunk[j : j + FOLD_SLICE], ctx, part.max_ts, now_ms, result, part.window
                    )
                if result is not None:
                    folds.append((part, result))
            if not folds:
                break
            for part, result in folds:  # as BatchEngine._collect_relays
                if relay is not None and part.family in relay.families:
                    collect_relay(result.deltas, relay.state, home_partitions)
            t1 = time.perf_counter()
            plans, reads = plan_keyed_reads(
                [(p.family, p.shard, r) for p, r in folds], keyed_states, keys, ctx.lateness_ms
            )
            stored = await store.read_keyed(client, reads)
            t2 = time.perf_counter()
            settle_keyed(plans, stored)
            t3 = time.perf_counter()
            calls = []
            for part, result in folds:
                call_keys, argv = build_call(
                    result.deltas,
                    layout,
                    part.shard,
                    part.offset,
                    result.last_offset,
                    result.max_ts,
                    now_ms // 1000,
                )
                calls.append(store.PendingCall(part.shard, call_keys, argv))
                part.offset, part.max_ts = result.last_offset, result.max_ts
                out.events += result.last_offset - result.first_offset + 1
            t4 = time.perf_counter()
            outcomes = await store.apply_calls(client, calls)
            if not all(o.applied for o in outcomes):
                raise RuntimeError("an apply was refused: is another run using these keys?")
            t5 = time.perf_counter()
            if redis_ops:
                capture_from = time.process_time()
                for call, (part, result) in zip(calls, folds, strict=True):
                    ops = build_ops(result.deltas, layout, part.shard, now_ms // 1000).ops
                    captured.append(CapturedApply(call, list(ops)))
                capture_s += time.process_time() - capture_from
            out.batches += 1
            for name, seconds in zip(
                PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
            ):
                out.phase_s[name] += seconds
        out.cpu_s = time.process_time() - cpu0 - capture_s
        redis_cpu1, redis_usec1 = await redis_cpu_seconds(client), await redis_command_usec(client)
        out.redis_cpu_s = sum(redis_cpu1.values()) - sum(redis_cpu0.values())
        out.redis_usec = {
            n: s - redis_usec0.get(n, 0)
            for n, s in redis_usec1.items()
            if s > redis_usec0.get(n, 0)
        }
        out.users = len({r.key for p in parts for r in p.records})
        if captured:
            out.redis_cpu_by_op = await redis_cpu_by_op(client, settings.key_prefix, captured)
        if footprint:
            out.footprint = await key_footprint(client, settings.key_prefix)
    finally:
        await client.aclose()
    return out


def run(
    base: Settings,
    *,
    events: int,
    users: int,
    mix: str,
    seed: int,
    partitions: int,
    footprint: bool = False,
    batches: bool = True,
    redis_ops: bool = False,
) -> Profile:
    settings, stack = with_infrastructure(base)
    settings = settings.with_overrides(key_prefix=f"prof{int(time.time())}")
    try:
        parts = partitioned(settings, events, users, mix, seed, partitions)
        tune_gc()  # as a worker does
        return asyncio.run(
            profile(settings, parts, settings.batch_max_records, footprint, batches, redis_ops)
        )
    finally:
        if stack is not None:
            stack.stop()
