"""The hot path: a batched Kafka consumer that folds batches and applies them exactly once.

A :class:`mode.Service` started by the faust app (faust owns lifecycle, web, producer, CLI), but
consuming with aiokafka's ``getmany`` directly: faust's per-event agent iteration costs ~150 µs
per event here, a batch loop a few µs. Per batch: fold each partition's records (pure), read
the keyed state it needs (sent behind the previous batch's apply), settle, publish rejects to
the DLQ and wait for the acks, then apply every partition's deltas + offset in one Redis round
trip (see "the batch" below). Partition progress lives in Redis; on assignment the consumer
seeks to it, so a partition that moves between workers needs no state restore, and Kafka's
committed offsets only follow (for lag tooling).

Must never: crash on a bad message, apply a batch without its offset guard, or let an exception
escape the loop (a Redis or Kafka outage is retried with backoff until the service stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mode
import redis.exceptions
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from stream.engine import log_end, store
from stream.engine.batch import (
    Folded,
    HeldBatch,
    PartitionState,
    plan_keyed_reads,
    settle_keyed,
    still_current,
)
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import Layout, build_call
from stream.engine.dlq import DlqPolicy, SendFn, publish_or_drop
from stream.engine.fold import FoldContext, FoldResult, fold_records
from stream.engine.keyed import KeyedState
from stream.engine.keys import Keys
from stream.engine.records import install as install_lean_records
from stream.engine.records import lean_value
from stream.engine.relay import RelayConfig, hw_fields
from stream.engine.relay import collect as collect_relay
from stream.engine.worker_metrics import WorkerMetrics

__all__ = ["FOLD_SLICE", "BatchEngine", "EngineConfig"]

log = logging.getLogger(__name__)

#: Records folded between two turns of the event loop (see _process).
FOLD_SLICE = 1000


@dataclass(frozen=True)
class EngineConfig:
    bootstrap_servers: str
    group_id: str
    topic_family: dict[str, str]  # input topic -> family name (shard prefix)
    dlq_topic: str
    batch_max_records: int
    batch_timeout_ms: int
    commit_interval_s: float = 1.0
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_000
    rebalance_timeout_ms: int = 5_000
    dedupe_window_events: int = 50_000  # per partition; 0: no duplicate detection
    client_kwargs: dict[str, Any] | None = None  # TLS / SASL settings passed to aiokafka
    dlq_policy: DlqPolicy = field(default_factory=DlqPolicy)
    relay: RelayConfig | None = None  # other families' score inputs into the home topic
    #: How often every owned partition's stored progress is compared with what this worker
    #: applied, idle partitions included (a store that lost it is rebuilt from the log).
    store_check_interval_s: float = 2.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.engine.on_assigned(assigned)


#: While Redis is busy, how long the batch loop waits for it before it looks for newly fetched
#: records again (it is woken at once when Redis is done).
TOPUP_WAIT_S = 0.005


class BatchEngine(mode.Service):
    def __init__(
        self,
        config: EngineConfig,
        redis: str | store.RedisTarget,
        keys: Keys,
        layout: Layout,
        fold_ctx: FoldContext,
        metrics: WorkerMetrics,
        send: SendFn,
        clock: Callable[[], float] = time.time,
        keyed_states: Sequence[KeyedState] = (),
        **kwargs: Any,
    ) -> None:
        self.config = config
        self.redis_target = redis
        self.keys = keys
        self.layout = layout
        self.fold_ctx = fold_ctx
        self.metrics = metrics
        self.send = send
        self.clock = clock
        self.keyed_states = tuple(keyed_states)
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self._lock = asyncio.Lock()  # held while a batch is in flight; revocation waits for it
        self._to_commit: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._lag_seen: set[tuple[str, str]] = set()
        self.batches_applied = 0
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._inflight: asyncio.Future[list[dict[str, Any]]] | None = None
        self._held: HeldBatch | None = None  # folded, its keyed read in flight (see _process)
        #: partitions of the home topic (relay lanes); 0 until known
        self.home_partitions = 0
        #: last offset this worker saw applied (acknowledged by Redis) per owned partition
        self._applied: dict[TopicPartition, int] = {}
        #: partitions re-read after a lost store -> the log's last offset when the loss was seen
        self.rebuilding: dict[TopicPartition, int] = {}
        #: owned partitions not consumed: their stored offset is past the log's end
        self.ahead: dict[TopicPartition, str] = {}
        super().__init__(**kwargs)

    # ---- lifecycle -------------------------------------------------------------------------
    async def on_start(self) -> None:
        self.redis = store.connect(self.redis_target)
        await self._redis_retry(lambda: store.load_function(self.redis))
        await self._redis_retry(lambda: store.check_placement(self.redis, self.keys))
        install_lean_records()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers,
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            rebalance_timeout_ms=self.config.rebalance_timeout_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            value_deserializer=lean_value,  # raw C records: see stream.engine.records
            **(self.config.client_kwargs or {}),
        )
        self._consumer.subscribe(list(self.config.topic_family), listener=_Rebalance(self))
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            async with self._lock:
                await self._drain()
                await self._commit(force=True)
            await self._consumer.stop()
        await self.redis.aclose()

    @mode.Service.task
    async def _consume(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self.should_stop:
            try:
                batch = await consumer.getmany(
                    timeout_ms=self.config.batch_timeout_ms,
                    max_records=self.config.batch_max_records,
                )
            except KafkaError as exc:
                log.warning("fetch failed (%s); retrying", type(exc).__name__)
                await self.sleep(1.0)
                continue
            # Taken before any await: the store watch may re-seek while we wait for the lock.
            fetched_with = {tp: self.partitions.get(tp) for tp in batch}
            async with self._lock:
                if batch:
                    fresh = still_current(batch, fetched_with, self.partitions)
                    if len(fresh) < len(batch):
                        log.info(
                            "dropped the records of %d partition(s) fetched before a re-seek",
                            len(batch) - len(fresh),
                        )
                    if fresh:
                        await self._process(fresh)
                else:  # idle: let what was folded land before committing
                    await self._drain()
            await self._commit()

    @mode.Service.task
    async def _watch_store(self) -> None:
        """Notice a store that lost this worker's progress, on every partition it owns.

        A refused apply re-seeks a partition, but only one that receives records: after Redis
        restarted empty, idle partitions would stay unapplied (every read 0) for as long as they
        stay idle. So the stored offsets are read every few seconds and compared with the last
        offsets Redis acknowledged to this worker (taken before the read: an apply that lands
        meanwhile only moves the stored offset up). Lower means lost: re-seek and rebuild.
        """
        while not self.should_stop:
            await self.sleep(self.config.store_check_interval_s)
            try:
                await self._check_store()
                await self._release_reset()
            except Exception as exc:  # Redis down or failing over: the batch path retries
                log.warning(
                    "store check failed (%s); next in %.0f s",
                    exc,
                    self.config.store_check_interval_s,
                )

    async def _check_store(self) -> None:
        acknowledged = {tp: off for tp, off in self._applied.items() if off >= 0}
        tps = [tp for tp in sorted(acknowledged) if tp in self.partitions]
        if not tps:
            return
        shards = [self.partitions[tp].shard for tp in tps]
        stored = await store.read_offsets(self.redis, self.keys, shards)
        lost = [tp for tp, off in zip(tps, stored, strict=True) if off < acknowledged[tp]]
        if not lost:
            return
        assert self._consumer is not None
        async with self._lock:
            await self._drain()  # what is in flight lands (or is refused and re-seeked) first
            for tp in lost:
                state = self.partitions.get(tp)
                if state is None or self._applied.get(tp, -1) != acknowledged[tp]:
                    continue  # revoked, or re-seeked by a refused apply meanwhile
                progress = await store.read_progress(self.redis, self.keys, state.shard)
                if progress.offset >= acknowledged[tp]:
                    continue
                self.metrics.store_lost.labels(tp.topic).inc()
                log.error(
                    "stored progress of %s went back from offset %d to %d (Redis lost data: "
                    "restarted empty, or a failover lost writes): re-reading the partition",
                    state.shard,
                    acknowledged[tp],
                    progress.offset,
                )
                await self._seek_to(tp, state.shard, progress)
                end = (await self._consumer.end_offsets([tp]))[tp]
                if end - 1 > progress.offset:
                    self.rebuilding[tp] = end - 1
            # The shard registry and the placement marker went with the rest. The marker first:
            # shards without one read as a store of the older `partition` placement, and a
            # `spread` worker would refuse it (this one here; every worker at its next start).
            await store.check_placement(self.redis, self.keys)
            shards_now = [st.shard for st in self.partitions.values()]
            await store.register_shards(self.redis, self.keys, shards_now)
            self.metrics.rebuilding.set(len(self.rebuilding))

    # ---- rebalance -------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # let what was folded land before giving partitions up
            await self._drain()
            await self._commit(force=True)
            for tp in revoked:
                self.partitions.pop(tp, None)
                self._to_commit.pop(tp, None)
                self._applied.pop(tp, None)
                self.rebuilding.pop(tp, None)
                labels = (tp.topic, str(tp.partition))
                self.ahead.pop(tp, None)
                with contextlib.suppress(KeyError):  # never set: revoked before its check
                    self.metrics.offset_ahead.remove(*labels)
                if labels in self._lag_seen:  # a departed partition's lag is not ours to report
                    self._lag_seen.discard(labels)
                    self.metrics.consumer_lag.remove(*labels)
            self.metrics.assigned_partitions.set(len(self.partitions))
            self.metrics.rebuilding.set(len(self.rebuilding))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        shards = []
        found: dict[TopicPartition, tuple[str, store.PartitionProgress]] = {}
        for tp in sorted(assigned):
            shard = self.keys.shard(self.config.topic_family[tp.topic], tp.partition)
            shards.append(shard)
            found[tp] = (
                shard,
                await self._redis_retry(
                    lambda s=shard: store.read_progress(self.redis, self.keys, s)  # type: ignore[misc]
                ),
            )
        stored = {tp: progress.offset for tp, (_, progress) in found.items()}
        ends = await log_end.ends_if_behind(self._consumer, self.config, stored)
        for tp, (shard, progress) in found.items():
            labels = (tp.topic, str(tp.partition))
            if tp in ends:
                self._refuse_ahead(tp, shard, progress.offset, ends[tp])
                continue
            self.metrics.offset_ahead.labels(*labels).set(0)
            await self._seek_to(tp, shard, progress)
        await self._redis_retry(lambda: store.register_shards(self.redis, self.keys, shards))
        self._refresh_home_partitions()
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("assigned %d partitions", len(assigned))
        self.ready.set()

    def _refuse_ahead(self, tp: TopicPartition, shard: str, stored: int, end: int) -> None:
        """Stored offset ``stored`` was applied, but the log ends before it: the records the
        log will get next have offsets the store counts as applied, and would be skipped. So the
        partition is paused until an operator clears its stored state (``stream reset``)."""
        assert self._consumer is not None
        self._consumer.pause(tp)
        self.ahead[tp] = shard
        self.metrics.offset_ahead.labels(tp.topic, str(tp.partition)).set(1)
        log.error(
            "%s[%d]: Redis holds offset %d as applied but the log's next offset is %d (recreated, "
            "wiped or another cluster?): not consuming it. To start it over, run "
            "`stream reset --topic %s --partition %d --apply` (runbook of the alert "
            "EngagementStreamPartitionOffsetAhead)",
            tp.topic,
            tp.partition,
            stored,
            end,
            tp.topic,
            tp.partition,
        )

    async def _release_reset(self) -> None:
        """Resume the refused partitions whose stored state an operator cleared."""
        assert self._consumer is not None
        for tp, shard in list(self.ahead.items()):
            progress = await store.read_progress(self.redis, self.keys, shard)
            if progress.offset >= 0:
                continue  # still there: only `stream reset` (no progress at all) releases it
            labels = (tp.topic, str(tp.partition))
            async with self._lock:
                if self.ahead.pop(tp, None) is None:
                    continue
                self.metrics.offset_ahead.labels(*labels).set(0)
                await self._seek_to(tp, shard, progress)
                await store.register_shards(self.redis, self.keys, [shard])
                self._consumer.resume(tp)
                log.info("%s[%d]: stored state reset; consuming from the start", *labels)

    async def _seek_to(
        self, tp: TopicPartition, shard: str, progress: store.PartitionProgress
    ) -> None:
        assert self._consumer is not None
        window = PartitionWindow(self.config.dedupe_window_events)
        relay = self.config.relay
        home = relay is not None and self.config.topic_family[tp.topic] == relay.home_family
        self.partitions[tp] = PartitionState(
            shard,
            progress.offset,
            progress.max_ts,
            window,
            progress.offset,
            dict(progress.relay_hw) if home else None,
        )
        self._applied[tp] = progress.offset
        if progress.offset >= 0:
            # Re-read the records before the stored position into the duplicate window first:
            # the fold only rebuilds the window from them (warm_until), it counts nothing twice.
            self._consumer.seek(tp, window.warm_start(progress.offset))
        else:
            # Offset 0 (not seek_to_beginning, which waits on a ListOffsets round trip per
            # partition): below the log start it resets to the earliest offset by itself.
            self._consumer.seek(tp, 0)

    # ---- the batch -------------------------------------------------------------------------
    # A batch goes through three stages -- fold (worker CPU), keyed read (Redis), settle + apply
    # (worker CPU, then Redis) -- and two batches are in flight so that the worker does not wait
    # for Redis's reads while it has a batch to fold:
    #
    #   fold N+1  |  Redis: apply N-1, then read N   (one pipeline, one connection, in order)
    #   settle N with its read; send [apply N, read N+1]; fold N+2 ...
    #
    # The read of N is queued behind the apply of N-1 on the same connection, so it sees N-1's
    # effects; N's own settle runs only after its read came back. Fold progress (max event time,
    # relay marks) moves on at fold time, the guarded offset at apply time. A batch folded with
    # a partition state that has since been replaced (a refused apply re-seeks the partition, a
    # revocation drops it) is stale and dropped. At most one pipeline is in flight and one
    # folded batch waits for it; a revocation or a stop drains both (`_drain`).

    async def _process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        now_ms = int(self.clock() * 1000)
        folds: dict[TopicPartition, Folded] = {}
        total = await self._fold(self._states_of(batch), folds, now_ms)
        # Redis still busy with the pipeline in flight: fold what has arrived since, into the
        # same batch, rather than wait idle (up to the batch's size). The records of a fetch
        # follow those of the fetch before on each partition, so they continue its fold.
        while (
            self._inflight is not None
            and not self._inflight.done()
            and total < self.config.batch_max_records
            and not self._reassigning()
        ):
            assert self._consumer is not None
            # timeout 0: getmany returns at once with what the fetcher holds; it awaits nothing
            # unless a rebalance is under way, which _reassigning() has just ruled out.
            more = await self._consumer.getmany(
                timeout_ms=0, max_records=self.config.batch_max_records - total
            )
            if not more:  # nothing yet: wait a little for Redis (records arrive meanwhile)
                await asyncio.wait([self._inflight], timeout=TOPUP_WAIT_S)
                continue
            self.metrics.batch_topups.inc()
            total += await self._fold(self._states_of(more), folds, now_ms)
        if folds:
            plan = self._plan(list(folds.values()), started, total, now_ms)
            await self._settle_held_and_send(plan)

    def _reassigning(self) -> bool:
        """Is a rebalance under way? Then getmany waits for the new assignment, and that waits
        for the revocation callback, which waits for the lock this batch holds: a top-up must not
        fetch. aiokafka says so only in its subscription state (no public API); if a release
        renames it, the answer is yes, and batches are simply not topped up."""
        subscription = getattr(self._consumer, "_subscription", None)
        return bool(getattr(subscription, "reassignment_in_progress", True))

    def _states_of(
        self, batch: dict[TopicPartition, list[Any]]
    ) -> list[tuple[TopicPartition, PartitionState | None, list[Any]]]:
        # Taken before any await: a partition re-seeked while we fold (a refused apply) gets a
        # new state, and what we fetched for it is stale -- its fold is dropped.
        return [(tp, self.partitions.get(tp), records) for tp, records in batch.items()]

    async def _fold(
        self,
        states: list[tuple[TopicPartition, PartitionState | None, list[Any]]],
        folds: dict[TopicPartition, Folded],
        now_ms: int,
    ) -> int:
        """Fold fetched records into ``folds`` (a partition's fold continues its earlier one in
        the batch); how many records were folded."""
        total = 0
        for tp, state, records in states:
            if state is None or not records:
                continue  # revoked while fetched
            earlier = folds.get(tp)
            if earlier is not None and earlier.state is not state:
                continue  # re-seeked since its earlier records were folded: these are stale
            result = earlier.result if earlier is not None else None
            folded_to = result.last_offset if result is not None else None
            for i in range(0, len(records), FOLD_SLICE):
                if self.partitions.get(tp) is not state:
                    break
                result = fold_records(
                    records[i : i + FOLD_SLICE],
                    self.fold_ctx,
                    state.max_ts,
                    now_ms,
                    result,
                    state.window,
                    state.warm_until,
                    state.relay_hw,
                )
                if self._inflight is not None:
                    # The pipeline in flight may still sit in the socket's write buffer: a turn
                    # of the event loop lets Redis receive it and work while we fold.
                    await asyncio.sleep(0)
            if result is None or self.partitions.get(tp) is not state:
                folds.pop(tp, None)  # only warm-up records, or re-seeked meanwhile
                continue
            from_offset = result.first_offset if folded_to is None else folded_to + 1
            total += result.last_offset - from_offset + 1
            if earlier is None:
                folds[tp] = Folded(tp, state, result, state.relay_hw or {})
            # Fold progress: the next batch of this partition folds on from here.
            state.max_ts = result.max_ts
            state.relay_hw = result.relay_hw
        return total

    def _plan(self, folds: list[Folded], started: float, total: int, now_ms: int) -> HeldBatch:
        plans, reads = plan_keyed_reads(
            [(self.config.topic_family[f.tp.topic], f.state.shard, f.result) for f in folds],
            self.keyed_states,
            self.keys,
            self.fold_ctx.lateness_ms,
        )
        return HeldBatch(folds, plans, reads, started, total, now_ms)

    async def _settle_held_and_send(self, new: HeldBatch | None) -> None:
        """Settle the held batch and send its apply with ``new``'s keyed read behind it; hold
        ``new``. With ``new`` None: settle and send what is held, read nothing."""
        waited = time.perf_counter()
        stored = await self._finish_inflight()
        self.metrics.redis_wait.inc(time.perf_counter() - waited)
        held, self._held = self._held, None
        if held is not None:
            stored = held.drop_stale(self.partitions, stored)
        if new is not None:
            new.drop_stale(self.partitions, [])
        calls: list[store.PendingCall] = []
        if held is not None and held.folds:
            calls = await self._settle(held, stored)
        reads = new.reads if new is not None and new.folds else []
        if calls or reads:
            applied = held if calls else None
            self._inflight = asyncio.ensure_future(self._send(applied, calls, reads))
            await asyncio.sleep(0)  # let it send its commands before the next fold takes the CPU
        if new is not None and new.folds:
            self._held = new

    async def _drain(self) -> None:
        """Settle and apply everything folded, and wait for it to land."""
        while self._held is not None or self._inflight is not None:
            await self._settle_held_and_send(None)

    async def _settle(
        self, held: HeldBatch, stored: Sequence[dict[str, Any]]
    ) -> list[store.PendingCall]:
        """Relays, keyed state and dead letters of a folded batch; its apply calls."""
        if self.config.relay is not None:
            await self._collect_relays(held.folds)
        if held.plans:
            settle_keyed(held.plans, stored)
        calls: list[store.PendingCall] = []
        for f in held.folds:
            keys, argv = build_call(
                f.result.deltas,
                self.layout,
                f.state.shard,
                f.state.offset,
                f.result.last_offset,
                f.result.max_ts,
                held.now_ms // 1000,
                hw_fields(f.relay_before, f.result.relay_hw or {}),
            )
            calls.append(store.PendingCall(f.state.shard, keys, argv))
        for f in held.folds:
            if f.result.rejected:
                await self._dead_letter(f.tp, f.result)
        # Optimistic progress, so that the next batch guards against this one; a refusal
        # resets it from what Redis really holds.
        for f in held.folds:
            f.state.offset = f.result.last_offset
        return calls

    async def _dead_letter(self, tp: TopicPartition, result: FoldResult) -> None:
        """Publish a partition's rejects to the DLQ and wait for the acks; if the policy gives up
        on Kafka, they are dropped and counted (:func:`stream.engine.dlq.publish_or_drop`)."""
        await publish_or_drop(
            self.send,
            self.config.dlq_topic,
            tp.topic,
            tp.partition,
            result.rejected,
            self.metrics,
            self.config.dlq_policy,
        )

    async def _send(
        self,
        held: HeldBatch | None,
        calls: list[store.PendingCall],
        reads: list[store.KeyedRead],
    ) -> list[dict[str, Any]]:
        """Apply one batch and read the next one's keyed state, in one round trip; return what
        was read. A partition whose batch Redis refused is re-seeked (a new state: what was
        folded with the old one is stale)."""
        rtt_start = time.perf_counter()
        outcomes: list[store.ApplyOutcome]
        stored: list[dict[str, Any]]
        outcomes, stored = await self._redis_retry(
            lambda: store.apply_then_read(self.redis, calls, reads)
        )
        self.metrics.redis_rtt.observe(time.perf_counter() - rtt_start)
        if held is None:
            return stored
        applied_at = self.clock()
        for f, outcome in zip(held.folds, outcomes, strict=True):
            tp, state, result = f.tp, f.state, f.result
            if not outcome.applied:
                assert outcome.stored is not None
                self.metrics.batches_refused.labels(tp.topic).inc()
                log.warning(
                    "batch on %s refused (stored offset %d, ours %d): re-seeking",
                    state.shard,
                    outcome.stored.offset,
                    result.first_offset - 1,
                )
                if self.partitions.get(tp) is state:
                    # One snapshot of everything stored with the offset (relay marks too).
                    progress = await self._redis_retry(
                        lambda s=state.shard: store.read_progress(self.redis, self.keys, s)  # type: ignore[misc]
                    )
                    await self._seek_to(tp, state.shard, progress)
                continue
            self._to_commit[tp] = result.last_offset + 1
            if self.partitions.get(tp) is state:
                self._applied[tp] = result.last_offset
                target = self.rebuilding.get(tp)
                if target is not None and result.last_offset >= target:
                    del self.rebuilding[tp]
                    self.metrics.rebuilding.set(len(self.rebuilding))
                    log.info("%s rebuilt through offset %d", state.shard, target)
            self._observe(tp, result, applied_at)
        self.batches_applied += 1
        self.metrics.batch_size.observe(held.total)
        self.metrics.apply_seconds.observe(time.perf_counter() - held.started)
        self.metrics.last_batch_time.set(applied_at)
        return stored

    async def _finish_inflight(self) -> list[dict[str, Any]]:
        """Wait for the pipeline in flight, if any: the keyed values it read."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return []
        return await inflight

    def owned_shards(self, topic: str) -> list[tuple[str, int]]:
        """(shard, partition) of each partition of ``topic`` this worker owns right now: what
        an outbox publisher may drain (only a partition's owner publishes its outbox)."""
        return [(st.shard, tp.partition) for tp, st in self.partitions.items() if tp.topic == topic]

    def _refresh_home_partitions(self) -> int:
        relay = self.config.relay
        if relay is None or self._consumer is None:
            return 0
        # The home topic is part of the subscription: its metadata is cached once we joined.
        self.home_partitions = len(self._consumer.partitions_for_topic(relay.home_topic) or ())
        return self.home_partitions

    async def _collect_relays(self, folds: list[Folded]) -> None:
        """Source partitions: their customer-state items become relay outbox messages."""
        relay = self.config.relay
        assert relay is not None
        sources = [f for f in folds if self.config.topic_family[f.tp.topic] in relay.families]
        if not any(relay.state in f.result.deltas.keyed for f in sources):
            return
        partitions = self._refresh_home_partitions()
        while not partitions:  # a batch is never applied without its relays: wait for metadata
            log.warning("no partitions known for %s yet; retrying", relay.home_topic)
            await asyncio.sleep(0.5)
            partitions = self._refresh_home_partitions()
        for f in sources:
            collect_relay(f.result.deltas, relay.state, partitions)

    def _observe(self, tp: TopicPartition, result: FoldResult, applied_at: float) -> None:
        topic = tp.topic
        count = result.last_offset - result.first_offset + 1
        self.metrics.consumed.labels(topic).inc(count)
        self.metrics.applied.labels(topic).inc(result.accepted)
        for rejected in result.rejected:
            self.metrics.rejected.labels(topic, rejected.reason.value).inc()
            if rejected.reason == "late":
                self.metrics.late.labels(topic).inc()
        for ts in result.lag_sample_ts:
            self.metrics.event_lag.observe(max(0.0, applied_at - ts / 1000))
        for outcome, n in result.relayed.items():
            self.metrics.relay_received.labels(outcome).inc(n)
        assert self._consumer is not None
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            self._lag_seen.add((topic, str(tp.partition)))
            self.metrics.consumer_lag.labels(topic, str(tp.partition)).set(
                max(0, highwater - result.last_offset - 1)
            )

    async def _commit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._to_commit or (
            not force and now - self._last_commit < self.config.commit_interval_s
        ):
            return
        offsets, self._to_commit = self._to_commit, {}
        self._last_commit = now
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # informational only: Redis holds the truth
            log.info("kafka commit skipped (%s)", type(exc).__name__)

    # ---- retries ---------------------------------------------------------------------------
    async def _redis_retry(self, op: Callable[[], Awaitable[Any]]) -> Any:
        delay = 0.1
        while True:
            try:
                return await op()
            except store.RETRYABLE as exc:
                self.metrics.redis_errors.inc()
                log.warning("redis unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except redis.exceptions.ResponseError as exc:
                if "Function not found" not in str(exc):
                    raise
                # Redis (or, on a cluster, one primary) restarted without our library
                await store.load_function(self.redis)
