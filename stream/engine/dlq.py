"""Dead-letter publishing: every rejected message, with its original bytes and why.

At-least-once: a batch's rejects are published and acknowledged by Kafka *before* the batch is
applied, so a crash in between can repeat a DLQ record (recognisable by its source
topic/partition/offset) but never lose one. Records are JSON::

    {"reason", "detail", "source": {"topic", "partition", "offset", "timestamp_ms"},
     "original_b64"}

keyed by the original message key.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence

import orjson

from stream.engine.fold import Rejected

#: send(topic, key, value) -> awaitable acknowledging the write
SendFn = Callable[[str, bytes | None, bytes], Awaitable[object]]


def dlq_record(source_topic: str, partition: int, rejected: Rejected) -> bytes:
    return orjson.dumps(
        {
            "reason": rejected.reason.value,
            "detail": rejected.detail[:500],
            "source": {
                "topic": source_topic,
                "partition": partition,
                "offset": rejected.offset,
                "timestamp_ms": rejected.timestamp_ms,
            },
            "original_b64": base64.b64encode(rejected.value).decode("ascii"),
        }
    )


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
