"""Resolve where Kafka and Redis are: configured endpoints, or an embedded local stack.

The single switch between "production" (``KAFKA_BOOTSTRAP_SERVERS``/``REDIS_URL`` set) and the
embedded default the demo, the benchmark and a bare ``stream worker`` use.
"""

from __future__ import annotations

import logging

from stream.localstack import LocalStack
from stream.settings import Settings

log = logging.getLogger(__name__)


def with_infrastructure(settings: Settings) -> tuple[Settings, LocalStack | None]:
    """Settings pointing at real endpoints; starts a local stack for whatever is unset."""
    if settings.kafka_bootstrap_servers and settings.redis_url:
        return settings, None
    stack = LocalStack().start()
    overrides = {}
    if not settings.kafka_bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = stack.kafka_bootstrap
    if not settings.redis_url:
        overrides["redis_url"] = stack.redis_url
    log.info("started local stack: kafka %s, redis %s", stack.kafka_bootstrap, stack.redis_url)
    return settings.with_overrides(**overrides), stack


def child_environment(settings: Settings) -> dict[str, str]:
    """Environment for a child process that must use the same infrastructure."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
    }
