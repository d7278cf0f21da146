"""Operational Prometheus series of a worker (its own registry, never the global one).

Label values come only from bounded sets: topic names from configuration, partition numbers,
and :class:`~stream.contract.types.Reason` codes. Never a user, event or free-text label.
Business gauges (DAU, CTR, …) are not here: they are read from Redis at scrape time by
:mod:`stream.serving.exporter`, so that N workers export one global view.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.engine.compiled import CORES

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.compiled_core = Gauge(
            "stream_compiled_core",
            "1 when a hot-path module runs its compiled build, 0 when it runs its Python source "
            "(installed without a build, or a build older than the source).",
            ["module"],
            registry=r,
        )
        for module, is_compiled in CORES.items():
            self.compiled_core.labels(module).set(int(is_compiled))
        self.consumed = Counter(
            "stream_events_consumed", "Messages read from input topics.", ["topic"], registry=r
        )
        self.applied = Counter(
            "stream_events_applied",
            "Valid events whose effects were applied to Redis (exactly once).",
            ["topic"],
            registry=r,
        )
        self.rejected = Counter(
            "stream_events_rejected",
            "Messages sent to the dead-letter topic, by reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.churn_risk_transitions = Counter(
            "stream_churn_risk_transitions",
            "Churn-risk transitions published to the output topic (exactly once), by reason.",
            ["reason"],
            registry=r,
        )
        self.relay_published = Counter(
            "stream_relay_published",
            "Score inputs of other families relayed into the home topic (acked), by source family.",
            ["family"],
            registry=r,
        )
        self.relay_backlog = Gauge(
            "stream_relay_backlog_messages",
            "Relay messages waiting in the outboxes of the source partitions this worker owns.",
            registry=r,
        )
        self.relay_received = Counter(
            "stream_relay_received",
            "Relayed records read on home partitions, by outcome: applied, rejected (bad or late: "
            "dead-lettered), duplicate (re-send of an applied one), out_of_order (re-sent later).",
            ["outcome"],
            registry=r,
        )
        self.late = Counter(
            "stream_events_late",
            "Events behind their partition's watermark (also counted as rejected/late).",
            ["topic"],
            registry=r,
        )
        self.batches_refused = Counter(
            "stream_batches_refused",
            "Batches refused by the offset guard (replay, zombie, failover); the worker re-seeks.",
            ["topic"],
            registry=r,
        )
        self.store_lost = Counter(
            "stream_store_lost_partitions",
            "Partitions whose stored progress vanished or went back (Redis restarted empty, a "
            "failover that lost writes); the worker re-seeks them and rebuilds from the log.",
            ["topic"],
            registry=r,
        )
        self.rebuilding = Gauge(
            "stream_partitions_rebuilding",
            "Partitions this worker is rebuilding after a lost store (/readyz is 503 meanwhile).",
            registry=r,
        )
        self.redis_errors = Counter(
            "stream_redis_errors", "Failed Redis round trips (retried with backoff).", registry=r
        )
        self.dlq_errors = Counter(
            "stream_dlq_publish_errors", "Failed dead-letter publishes (retried).", registry=r
        )
        self.dlq_dropped = Counter(
            "stream_dlq_dropped",
            "Dead letters dropped after the DLQ stayed unreachable for the give-up time.",
            ["topic", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "stream_batch_size_events",
            "Records per consumer batch (all partitions).",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.apply_seconds = Histogram(
            "stream_batch_apply_seconds",
            "Time to fold and apply one consumer batch, decode to Redis ack.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.redis_rtt = Histogram(
            "stream_redis_roundtrip_seconds",
            "Duration of the one Redis round trip per batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.batch_topups = Counter(
            "stream_batch_topups",
            "Fetches folded into a batch because the Redis pipeline in flight was still busy "
            "when the batch's own records were folded (instead of waiting for it idle).",
            registry=r,
        )
        self.redis_wait = Counter(
            "stream_redis_wait_seconds",
            "Time the batch loop waited for the Redis pipeline in flight (the last apply and the "
            "next keyed read) instead of folding. Per second of wall time: the share of time Redis "
            "held the worker up.",
            registry=r,
        )
        self.event_lag = Histogram(
            "stream_event_lag_seconds",
            "End-to-end lag: apply time minus event time (sampled events).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "stream_consumer_lag_messages",
            "High watermark minus applied position, per owned input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.offset_ahead = Gauge(
            "stream_partition_offset_ahead",
            "1 for an owned partition whose offset stored in Redis is at or past the log's end "
            "(topic recreated, broker data wiped, wrong cluster): not consumed until `stream "
            "reset` clears its stored state.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "stream_assigned_partitions", "Input partitions owned by this worker.", registry=r
        )
        self.last_batch_time = Gauge(
            "stream_last_batch_timestamp_seconds",
            "Wall-clock time of the last applied batch (0: none yet).",
            registry=r,
        )
