"""Resolve where Kafka and Redis are: configured endpoints, or an embedded local stack.

The single switch between "production" (``KAFKA_BOOTSTRAP_SERVERS``/``REDIS_URL`` set) and the
embedded default the demo, the benchmark and a bare ``stream worker`` use.
"""

from __future__ import annotations

import gc
import logging

from stream.config.settings import Settings
from stream.infra.localstack import LocalStack

__all__ = ["child_environment", "tune_gc", "with_infrastructure", "worker_environment"]

log = logging.getLogger(__name__)


def with_infrastructure(settings: Settings) -> tuple[Settings, LocalStack | None]:
    """Settings pointing at real endpoints; starts a local stack for whatever is unset."""
    if settings.kafka_bootstrap_servers and settings.redis_url:
        return settings, None
    stack = LocalStack(redis_cluster=settings.redis_cluster).start()
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
        "STREAM_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
    }


def worker_environment(settings: Settings) -> dict[str, str]:
    """Environment for a ``stream worker`` child that must also share topics, group and keys
    (and the timing that decides lateness and sessions) with the parent's settings."""
    t = settings.topics
    return {
        **child_environment(settings),
        "STREAM_KEY_PREFIX": settings.key_prefix,
        "STREAM_REDIS_PLACEMENT": settings.redis_placement.value,
        "STREAM_CONSUMER_GROUP": settings.consumer_group,
        "STREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "STREAM_TOPICS__CLICKSTREAM": t.clickstream,
        "STREAM_TOPICS__SOCIAL": t.social,
        "STREAM_TOPICS__SUPPORT": t.support,
        "STREAM_TOPICS__FEEDBACK": t.feedback,
        "STREAM_TOPICS__ACCOUNT": t.account,
        "STREAM_TOPICS__DLQ": t.dlq,
        "STREAM_TOPICS__CHURN_RISK": t.churn_risk,
        "STREAM_TIMEZONE": settings.timezone,
        "STREAM_ALLOWED_LATENESS_SECONDS": str(settings.allowed_lateness_seconds),
        "STREAM_SESSIONS_ENABLED": str(settings.sessions_enabled).lower(),
        "STREAM_SESSION_TIMEOUT_SECONDS": str(settings.session_timeout_seconds),
        "STREAM_SCORE": settings.score.model_dump_json(),
        "STREAM_SUPPORT_BUSINESS_HOURS": settings.support_business_hours.model_dump_json(),
    }


def tune_gc() -> None:
    """Fewer, cheaper collections for a worker: the hot path allocates many short-lived, acyclic
    containers (batches of records, per-key lists) that reference counting frees, and the default
    thresholds re-scan the long-lived heap (imports, faust) over and over -- measured ~25 % of
    fold time. Frozen start-up objects are never scanned; cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
