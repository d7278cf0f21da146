"""Fixtures: one real local stack (Tansu + redis-server) per test session, isolation per test.

Every test gets its own topic names, consumer group and Redis key prefix, so tests never see
each other's data even though they share the broker and Redis processes.

``pytest --redis-cluster`` runs the same tests against a local Redis Cluster (3 primaries,
3 replicas) instead of one ``redis-server``: the store topology is a fixture, not a code path
of the tests. Tests marked ``own_store`` start a store of their own to break or reconfigure
(TLS, failover): they run once, in the default pass, and are skipped there.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from stream.config.settings import Settings, TopicNames
from stream.infra.connections import redis_target
from stream.infra.localstack import LocalStack
from stream.infra.redis_cluster import LocalRedisCluster

_counter = itertools.count()

# CI machines have 2 cores shared with a broker and Redis: timing-based health checks and
# per-example deadlines would fail on load, not on a wrong result.
hypothesis_settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("shared-machine")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-cluster",
        action="store_true",
        default=False,
        help="run against a local Redis Cluster (3 primaries + 3 replicas) instead of one Redis",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--redis-cluster"):
        return
    skip = pytest.mark.skip(reason="starts a store of its own: runs in the default pass")
    for item in items:
        if "own_store" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack(redis_appendonly=True) as running:
        yield running


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[LocalRedisCluster | None]:
    """The session's Redis Cluster with ``--redis-cluster``, else None."""
    if not request.config.getoption("--redis-cluster"):
        yield None
        return
    with LocalRedisCluster(primaries=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def settings(
    stack: LocalStack, redis_cluster: LocalRedisCluster | None, request: pytest.FixtureRequest
) -> Settings:
    n = next(_counter)
    tag = f"t{os.getpid()}x{n}"
    return Settings(
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        redis_url=stack.redis_url if redis_cluster is None else redis_cluster.url,
        redis_cluster=redis_cluster is not None,
        topics=TopicNames.with_prefix(tag),
        consumer_group=f"{tag}-group",
        key_prefix=tag,
        topic_partitions=4,
    )


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[object]:
    from stream.engine import store

    client = store.connect(redis_target(settings))
    yield client
    await client.aclose()
