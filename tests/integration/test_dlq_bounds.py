"""The dead-letter path is bounded: large originals are cut to fit, a dead Kafka is given up on.

Both against a real broker: the truncated record must really be accepted by Kafka, and "Kafka
is down" is a stopped Tansu process, not a simulated error.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.config.settings import Settings
from stream.contract.types import Reason
from stream.engine.dlq import MAX_ORIGINAL_BYTES, DlqPolicy, dlq_record, publish_or_drop
from stream.engine.fold import Rejected
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.localstack import LocalStack
from tests.support.harness import counter_total
from tests.unit.test_schemas import schema_errors

pytestmark = pytest.mark.integration


def _rejected(offset: int, size: int = 10) -> Rejected:
    return Rejected(offset, b"k", b"x" * size, 0, Reason.OVERSIZED, "too big")


def _dropped(metrics: WorkerMetrics) -> float:
    return counter_total(metrics, "stream_dlq_dropped")


async def test_a_huge_original_is_truncated_and_kafka_accepts_the_record(
    settings: Settings,
) -> None:
    record = dlq_record("in", 0, _rejected(7, size=3 * 1024 * 1024))
    body = orjson.loads(record)
    assert body["original_truncated"] is True and body["original_size"] == 3 * 1024 * 1024
    assert len(body["original_b64"]) == (MAX_ORIGINAL_BYTES + 2) // 3 * 4
    assert schema_errors("dead-letter", body) == []
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:  # the default 1 MB request limit, as faust's producer has
        metadata = await producer.send_and_wait(settings.topics.dlq, record, key=b"k")
        assert metadata.offset >= 0
    finally:
        await producer.stop()


async def test_dead_letters_are_dropped_and_counted_only_once_kafka_is_down() -> None:
    metrics = WorkerMetrics()
    policy = DlqPolicy(attempt_timeout_s=0.5, give_up_after_s=2.0)
    rejects = [_rejected(1), _rejected(2)]
    with LocalStack() as own:  # a broker of our own, to stop it
        admin = AIOKafkaAdminClient(bootstrap_servers=own.kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("dlq", 1, 1)])
        await admin.close()
        # Requests time out after 5 s (aiokafka's default is 40 s): the sends the policy gave up
        # on stay queued in the producer until then, and stop() waits for them.
        producer = AIOKafkaProducer(
            bootstrap_servers=own.kafka_bootstrap, acks="all", request_timeout_ms=5000
        )
        await producer.start()

        async def send(topic: str, key: bytes | None, value: bytes) -> Any:
            return await producer.send(topic, value, key=key)

        try:
            assert await publish_or_drop(send, "dlq", "in", 0, rejects, metrics, policy)
            assert _dropped(metrics) == 0
            own.stop_broker()
            assert not await publish_or_drop(send, "dlq", "in", 0, rejects, metrics, policy)
            assert _dropped(metrics) == len(rejects)
        finally:
            await producer.stop()
        # The abandoned sends failed for good inside stop(): still counted once each.
        assert _dropped(metrics) == len(rejects)
