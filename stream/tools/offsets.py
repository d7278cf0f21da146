"""Where each input partition's log really ends — for the benchmark and the test harness.

``ListOffsets`` is not trustworthy everywhere: Tansu 0.6 answers the *base* offset of the last
record batch + 1, so after a batched publish it under-reports the end by up to a batch (1M events
replayed in batches looked like ~972k). Anything that waits "until the worker has applied
everything" on that figure stops early. So the reported end is only a starting point: the tail
is read from one before it and the highest offset actually fetched decides. On a broker that
answers correctly this reads one record per partition and agrees with it.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.config.settings import Settings
from stream.engine.log_end import read_tail_ends
from stream.infra.connections import kafka_client_kwargs

__all__ = ["log_ends", "partitions_of"]


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the topics, refreshing metadata once when the client has none yet."""
    tps: list[TopicPartition] = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps.extend(TopicPartition(topic, p) for p in sorted(parts))
    return tps


async def log_ends(
    settings: Settings, topics: list[str] | None = None
) -> dict[TopicPartition, int]:
    """Last offset + 1 of every partition of ``topics`` (default: the input topics)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topics or settings.topics.inputs())
        reported: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
        return await read_tail_ends(consumer, reported, until_quiet=True)
    finally:
        await consumer.stop()
