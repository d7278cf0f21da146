"""Dead-letter publishing: every rejected message, with its original bytes and why.

At-least-once: a batch's rejects are published and acknowledged by Kafka *before* the batch is
applied, so a crash in between can repeat a DLQ record (recognisable by its source
topic/partition/offset) but never lose one. Records are JSON::

    {"reason", "detail", "source": {"topic", "partition", "offset", "timestamp_ms"},
     "original_b64"}

keyed by the original message key. An original larger than :data:`MAX_ORIGINAL_BYTES` is cut
to that size (``original_truncated``, ``original_size``): Kafka's default request limit (1 MB)
would otherwise refuse the dead letter of a large message forever and stall its partition.

Bounded waiting: the hot path waits for the acks, but not forever. Each attempt has a timeout
and failed attempts are retried with backoff for at most ``give_up_after_s``; if Kafka is still
unreachable then, the batch's dead letters are dropped — counted in
``stream_dlq_dropped_total{topic,reason}`` and logged with their source offsets — and the batch
is applied. The trade-off: a long Kafka outage loses dead letters (their originals are still in
the input topic, at the logged offsets) instead of stopping every metric. Only timeouts and
Kafka/network errors lead there; nothing else is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from aiokafka.errors import KafkaError

from stream.engine.fold import Rejected
from stream.engine.worker_metrics import WorkerMetrics

__all__ = [
    "MAX_ORIGINAL_BYTES",
    "DlqPolicy",
    "SendFn",
    "dlq_record",
    "publish_or_drop",
    "publish_rejects",
]

log = logging.getLogger(__name__)

#: Largest original kept in a dead letter; base64 makes it ~350 KB, well under 1 MB requests.
MAX_ORIGINAL_BYTES = 256 * 1024

#: send(topic, key, value) -> awaitable acknowledging the write
SendFn = Callable[[str, bytes | None, bytes], Awaitable[object]]


@dataclass(frozen=True)
class DlqPolicy:
    """How long the hot path may wait for dead letters to be acknowledged."""

    attempt_timeout_s: float = 10.0
    give_up_after_s: float = 60.0


def dlq_record(source_topic: str, partition: int, rejected: Rejected) -> bytes:
    original = rejected.value[:MAX_ORIGINAL_BYTES]
    record: dict[str, object] = {
        "reason": rejected.reason.value,
        "detail": rejected.detail[:500],
        "source": {
            "topic": source_topic,
            "partition": partition,
            "offset": rejected.offset,
            "timestamp_ms": rejected.timestamp_ms,
        },
        "original_b64": base64.b64encode(original).decode("ascii"),
    }
    if len(original) < len(rejected.value):
        record["original_truncated"] = True
        record["original_size"] = len(rejected.value)
    return orjson.dumps(record)


async def publish_rejects(
    send: SendFn,
    dlq_topic: str,
    source_topic: str,
    partition: int,
    rejects: Sequence[Rejected],
) -> None:
    """Publish and wait for every ack; raises if Kafka refuses (the caller retries)."""
    if not rejects:
        return
    acks = [await send(dlq_topic, r.key, dlq_record(source_topic, partition, r)) for r in rejects]
    pending = [a for a in acks if isinstance(a, asyncio.Future)]
    if pending:
        await asyncio.gather(*pending)


async def publish_or_drop(
    send: SendFn,
    dlq_topic: str,
    source_topic: str,
    partition: int,
    rejects: Sequence[Rejected],
    metrics: WorkerMetrics,
    policy: DlqPolicy,
) -> bool:
    """Publish with retries until acknowledged (True) or until the policy gives up (False)."""
    give_up_at = time.monotonic() + policy.give_up_after_s
    delay = 0.1
    while True:
        try:
            await asyncio.wait_for(
                publish_rejects(send, dlq_topic, source_topic, partition, rejects),
                policy.attempt_timeout_s,
            )
            return True
        except (TimeoutError, KafkaError, OSError) as exc:
            metrics.dlq_errors.inc()
            if time.monotonic() + delay >= give_up_at:
                for rejected in rejects:
                    metrics.dlq_dropped.labels(source_topic, rejected.reason.value).inc()
                log.error(
                    "dead-letter topic unreachable for %.0fs (%s): dropped %d dead letters of "
                    "%s[%d], offsets %d..%d",
                    policy.give_up_after_s,
                    type(exc).__name__,
                    len(rejects),
                    source_topic,
                    partition,
                    rejects[0].offset,
                    rejects[-1].offset,
                )
                return False
            log.warning("DLQ publish failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
