"""Drain per-partition Redis outboxes to Kafka exactly once (churn-risk transitions).

The apply writes each message into ``P:{shard}:ob:<name>`` (a Redis stream) with id ``0-<seq>``,
``seq`` counted per shard inside the same offset-guarded call as the state that decided it: a
message exists exactly once in Redis, whatever the crashes and replays. This publisher, run by the
owner of the input partition, sends the messages of shard ``<family>.<p>`` in sequence order to
partition ``p`` of the output topic (one writer per output partition), each carrying its
deterministic id ``<shard>:<seq>``, waits for every ack, then trims what it sent.

After a crash between sending and trimming, the next owner does not trust Redis to know what was
sent: it reads the tail of its output partition, takes the highest ``seq`` there, trims up to it
and resumes after it. So nothing is published twice (unless a zombie keeps sending after losing
the partition -- it stops at its next turn, see docs/architecture.md) and nothing is lost.

The relay of other families' score inputs into the home topic uses the same machinery with one
outbox per (shard, target partition) and a different recovery (:mod:`stream.engine.relay`): the
hooks :meth:`OutboxPublisher.outbox_key`, :meth:`~OutboxPublisher.recover` and
:meth:`~OutboxPublisher.record` are what differs.

Must never: publish out of sequence order, trim before the acks, or run for a shard it does not
own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import mode
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter, Gauge

from stream.engine.keys import Keys

if TYPE_CHECKING:  # store imports relay, which imports this module
    from stream.engine.store import RedisClient

__all__ = ["READ_COUNT", "OutboxPublisher", "last_published_seq", "message_id"]

log = logging.getLogger(__name__)

#: Messages read from an outbox per turn.
READ_COUNT = 500


def message_id(shard: str, seq: int) -> str:
    return f"{shard}:{seq}"


async def last_published_seq(
    bootstrap: str, tp: TopicPartition, client_kwargs: dict[str, Any]
) -> int:
    """Highest ``seq`` in the output partition's tail (0: nothing published yet).

    Reads from one before the reported end onwards until nothing more comes: Tansu under-reports
    the end by up to a record batch (see stream/tools/offsets.py).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return 0
        # Several batches may hide behind the reported end; reading back a few hundred records
        # covers the largest batch this publisher sends (READ_COUNT).
        consumer.seek(tp, max(0, end - 1 - READ_COUNT))
        best = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            if not batch:
                break
            for record in batch.get(tp, []):
                best = max(best, int(orjson.loads(record.value)["seq"]))
        return best
    finally:
        await consumer.stop()


class OutboxPublisher(mode.Service):
    """Publishes the outbox ``name`` of every shard this worker owns to ``topic``."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        name: str,
        topic: str,
        bootstrap: str,
        owned: Callable[[], Iterable[tuple[str, int]]],  # (owned shard, target partition)
        published: Counter,  # labelled by what record() says (churn: the message's "reason")
        client_kwargs: dict[str, Any] | None = None,
        interval_s: float = 0.2,
        backlog: Gauge | None = None,  # messages waiting in the owned outboxes
        **kwargs: Any,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.topic = topic
        self.bootstrap = bootstrap
        self.owned = owned
        self.published = published
        self.client_kwargs = client_kwargs or {}
        self.interval_s = interval_s
        self.backlog = backlog
        #: (shard, partition) -> highest seq known to be on the topic
        self._last: dict[tuple[str, int], int] = {}
        self._producer: AIOKafkaProducer | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, **self.client_kwargs
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @mode.Service.task
    async def _publish(self) -> None:
        while not self.should_stop:
            await self.drain_once()
            await self.sleep(self.interval_s)

    async def drain_once(self) -> int:
        """One pass over the owned outboxes; the number of messages published."""
        sent = 0
        owned = list(dict.fromkeys(self.owned()))
        for lane in list(self._last):
            if lane not in owned:  # lost it: the next owner recovers
                del self._last[lane]
        # One round trip tells which outboxes hold anything (most are empty most of the time).
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard, partition in owned:
                    pipe.xlen(self.outbox_key(shard, partition))
                lengths = await pipe.execute() if owned else []
        except Exception as exc:  # Redis trouble: try again next turn (never kill the task)
            log.warning("outbox %s: %s; will retry", self.name, exc)
            return 0
        if self.backlog is not None:
            self.backlog.set(sum(int(n) for n in lengths))
        for (shard, partition), length in zip(owned, lengths, strict=True):
            if not int(length):
                continue
            try:
                sent += await self._drain(shard, partition)
            except Exception as exc:  # Kafka or Redis trouble: recover next turn
                log.warning("outbox %s of %s: %s; will recover", self.name, shard, exc)
                self._last.pop((shard, partition), None)
        return sent

    # ---- what differs between outboxes ------------------------------------------------------
    def outbox_key(self, shard: str, partition: int) -> str:
        """The Redis stream drained to ``partition``."""
        return self.keys.outbox(shard, self.name)

    async def recover(self, shard: str, partition: int, key: str) -> int:
        """The highest seq already on the topic; trims the outbox up to it."""
        tp = TopicPartition(self.topic, partition)
        last = await last_published_seq(self.bootstrap, tp, self.client_kwargs)
        await self.redis.xtrim(key, minid=f"0-{last + 1}")
        return last

    def record(
        self, shard: str, seq: int, payload: bytes
    ) -> tuple[bytes, bytes, list[tuple[str, bytes]] | None, str]:
        """(value, key, headers, counter label) of the Kafka record for one outbox message."""
        message = orjson.loads(payload)
        message["id"] = message_id(shard, seq)
        message["seq"] = seq
        key = str(message.get("customer", "")).encode()
        return orjson.dumps(message), key, None, str(message.get("reason", ""))

    async def _trim(self, key: str, seq: int) -> None:
        """Forget what is on the topic (a crash just before this is what recovery is for)."""
        await self.redis.xtrim(key, minid=f"0-{seq + 1}")

    async def _drain(self, shard: str, partition: int) -> int:
        assert self._producer is not None
        key = self.outbox_key(shard, partition)
        last = self._last.get((shard, partition))
        if last is None:
            last = await self.recover(shard, partition, key)
            self._last[(shard, partition)] = last
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(
            key, min=f"(0-{last}", count=READ_COUNT
        )  # type: ignore[assignment]  # redis-py types the reply loosely
        if not entries:
            return 0
        futures = []
        labels = []
        seq = last
        for entry_id, fields in entries:
            seq = int(bytes(entry_id).split(b"-")[1])
            value, record_key, headers, label = self.record(shard, seq, fields[b"m"])
            labels.append(label)
            futures.append(
                await self._producer.send(
                    self.topic, value, key=record_key, partition=partition, headers=headers
                )
            )
        await asyncio.gather(*futures)  # every ack before the trim
        await self._trim(key, seq)
        self._last[(shard, partition)] = seq
        for label in labels:
            self.published.labels(label).inc()
        return len(entries)
