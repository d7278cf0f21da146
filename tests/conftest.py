"""Fixtures: one real local stack (Tansu + redis-server) per test session, isolation per test.

Every test gets its own topic names, consumer group and Redis key prefix, so tests never see
each other's data even though they share the broker and Redis processes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from stream.config.settings import Settings, TopicNames
from stream.infra.localstack import LocalStack

_counter = itertools.count()

# CI machines have 2 cores shared with a broker and Redis: timing-based health checks and
# per-example deadlines would fail on load, not on a wrong result.
hypothesis_settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("shared-machine")


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
        topics=TopicNames.with_prefix(tag),
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
