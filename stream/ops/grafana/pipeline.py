"""The "Pipeline health" dashboard: the workers' operational series (``stream_*``, per worker,
summed): throughput, dead letters, lag, latency, Redis."""

from __future__ import annotations

from stream.ops.grafana.panels import (
    RATE,
    Dashboard,
    Panel,
    Row,
    Target,
    labels_of,
    quantiles,
    stat,
)

__all__ = ["PIPELINE"]

T = 'job=~"$job", topic=~"$topic"'

PIPELINE = Dashboard(
    uid="pipeline-health",
    title="Pipeline health",
    description="Operational series of the workers (summed across workers): throughput, "
    "dead letters, lag, latency, Redis.",
    variables=(
        labels_of("stream_assigned_partitions", "job"),
        labels_of("stream_events_consumed_total", "topic"),
    ),
    rows=(
        Row(
            "Throughput",
            (
                stat("Workers up", 'sum(up{job=~"$job"})'),
                stat(
                    "Assigned partitions",
                    'sum(stream_assigned_partitions{job=~"$job"})',
                    description="Input partitions owned, all workers.",
                ),
                stat(
                    "Seconds since the last batch",
                    'time() - max(stream_last_batch_timestamp_seconds{job=~"$job"})',
                    "s",
                ),
                stat(
                    "Dead-letter share",
                    f"sum(rate(stream_events_rejected_total{{{T}}}{RATE}))"
                    f" / sum(rate(stream_events_consumed_total{{{T}}}{RATE}))",
                    "percentunit",
                ),
                Panel(
                    "Events in (consumed) per topic",
                    (
                        Target(
                            f"sum by (topic) (rate(stream_events_consumed_total{{{T}}}{RATE}))",
                            "{{topic}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Events out (applied to Redis) per topic",
                    (
                        Target(
                            f"sum by (topic) (rate(stream_events_applied_total{{{T}}}{RATE}))",
                            "{{topic}}",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Batch size",
                    (
                        Target(
                            "histogram_quantile(0.5, sum by (le) "
                            f'(rate(stream_batch_size_events_bucket{{job=~"$job"}}{RATE})))',
                            "p50",
                        ),
                    ),
                    description="Records per consumer batch.",
                ),
            ),
        ),
        Row(
            "Dead letters and late events",
            (
                Panel(
                    "Dead letters by reason",
                    (
                        Target(
                            f"sum by (reason) (rate(stream_events_rejected_total{{{T}}}{RATE}))",
                            "{{reason}}",
                        ),
                    ),
                    unit="ops",
                    width=12,
                ),
                Panel(
                    "Late events per topic",
                    (
                        Target(
                            f"sum by (topic) (rate(stream_events_late_total{{{T}}}{RATE}))",
                            "{{topic}} late/s",
                        ),
                    ),
                    unit="ops",
                    description="Late events are also dead letters (reason late): never add.",
                    width=12,
                ),
            ),
        ),
        Row(
            "Lag and latency",
            (
                Panel(
                    "Consumer lag per topic",
                    (
                        Target(
                            f"sum by (topic) (stream_consumer_lag_messages{{{T}}})",
                            "{{topic}}",
                        ),
                    ),
                    description="High watermark − position applied to Redis; updated per batch.",
                ),
                quantiles(
                    "End-to-end lag (apply time − event time)",
                    "stream_event_lag_seconds",
                    description="Sampled events; a backfill shows up as large lag.",
                ),
                quantiles("Batch latency (fold → Redis ack)", "stream_batch_apply_seconds"),
                Panel(
                    "Relay backlog",
                    (Target('sum(stream_relay_backlog_messages{job=~"$job"})', "waiting"),),
                    description="Score inputs of other families not yet relayed into the "
                    "clickstream topic. Growing: that topic is not writable by the workers.",
                ),
            ),
        ),
        Row(
            "Redis and dead-letter publishing",
            (
                quantiles("Redis round-trip time", "stream_redis_roundtrip_seconds"),
                Panel(
                    "Batch loop waiting on Redis (share of time)",
                    (
                        Target(
                            "sum by (instance) (rate(stream_redis_wait_seconds_total"
                            f'{{job=~"$job"}}{RATE}))',
                            "{{instance}}",
                        ),
                    ),
                    unit="percentunit",
                    description="Near 0: the workers are the bottleneck (add workers, up to the "
                    "partition count). Growing with load: Redis is (its CPU, or the network).",
                ),
                Panel(
                    "Batches topped up while Redis worked",
                    (
                        Target(
                            "sum by (instance) (rate(stream_batch_topups_total"
                            f'{{job=~"$job"}}{RATE}))',
                            "{{instance}}",
                        ),
                    ),
                    unit="ops",
                    description="Fetches folded into a batch while the Redis pipeline in flight "
                    "was still busy, instead of waiting for it idle. Frequent in a catch-up, "
                    "rare at live rates; the wait on Redis that remains is the panel before.",
                ),
                Panel(
                    "Redis and DLQ publish errors",
                    (
                        Target(
                            f'sum(rate(stream_redis_errors_total{{job=~"$job"}}{RATE}))',
                            "redis errors/s",
                        ),
                        Target(
                            f'sum(rate(stream_dlq_publish_errors_total{{job=~"$job"}}{RATE}))',
                            "dlq publish errors/s",
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Assigned partitions per worker",
                    (Target('stream_assigned_partitions{job=~"$job"}', "{{instance}}"),),
                ),
            ),
        ),
    ),
)
