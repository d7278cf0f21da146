"""Create the input, dead-letter and output topics when they do not exist yet.

Idempotent and safe to run from every process that starts (worker, simulator, replay): an
existing topic is left as it is, whatever its partition count.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.config.settings import Settings
from stream.infra.connections import kafka_client_kwargs

__all__ = ["ensure_topics"]

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> None:
    t = settings.topics
    wanted = [*t.inputs(), t.dlq, t.churn_risk]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **kafka_client_kwargs(settings)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return
        new = [
            NewTopic(n, settings.topic_partitions, settings.topic_replication_factor)
            for n in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            await admin.create_topics(new)
        log.info("created topics %s", missing)
    finally:
        await admin.close()
