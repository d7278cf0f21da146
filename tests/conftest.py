"""Fixtures: one real local stack (Tansu + redis-server) per test session, isolation per test.

Every test gets its own topic names, consumer group and Redis key prefix, so tests never see
each other's data even though they share the broker and Redis processes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from stream.localstack import LocalStack
from stream.settings import Settings, TopicNames

_counter = itertools.count()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack(redis_appendonly=True) as running:
        yield running


@pytest.fixture
def settings(stack: LocalStack, request: pytest.FixtureRequest) -> Settings:
    n = next(_counter)
    tag = f"t{os.getpid()}x{n}"
    return Settings(
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        topics=TopicNames(
            clickstream=f"{tag}.clickstream",
            social=f"{tag}.social",
            support=f"{tag}.support",
            feedback=f"{tag}.feedback",
            account=f"{tag}.account",
            dlq=f"{tag}.dlq",
            churn_risk=f"{tag}.churn-risk",
        ),
        consumer_group=f"{tag}-group",
        key_prefix=tag,
        topic_partitions=4,
    )


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[object]:
    from stream.engine import store

    client = store.connect(settings.redis_url)
    yield client
    await client.aclose()
