"""Grafana dashboards as data: a list of rows of panels per dashboard, rendered to the JSON that
Grafana provisions from ``deploy/grafana/dashboards/``.

Adding a panel is one entry in :data:`OVERVIEW` or :data:`PIPELINE`; then run
``python -m stream.ops.grafana`` and commit the JSON (a test fails while the two differ, and the
end-to-end test evaluates every expression against a real Prometheus scraping a real worker, so a
panel whose series does not exist cannot be merged).

PromQL conventions (docs/metrics.md): business gauges (``engagement_*``) are the same global view
on every worker, so they are aggregated with ``max``; operational series (``stream_*``) are per
worker and summed. Template variables only range over bounded label sets.

Must never: reference a series the code does not export.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Where the provisioned dashboards live in the repository (and in the Grafana container).
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
#: Regex of a multi-value variable's "All": any value, but the label must exist.
ALL = ".+"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    height: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: ``values`` (custom list) or ``metric`` + ``label`` (label_values)."""

    name: str
    label: str
    values: tuple[str, ...] = ()
    default: str = ""
    metric: str = ""
    label_name: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("engagement-stream",))


def labels_of(metric: str, label: str) -> Variable:
    """A multi-value variable over the values of ``label`` on ``metric`` (with "All")."""
    return Variable(label, label.capitalize(), metric=metric, label_name=label)


def top(metric: str, selector: str, by: str = "") -> str:
    """A business gauge across workers: ``max`` (``by`` the given labels)."""
    grouping = f" by ({by})" if by else ""
    return f"max{grouping} ({metric}{{{selector}}})"


def business(title: str, expr: str, legend: str = "", **kw: Any) -> Panel:
    """A business gauge: ``max`` across workers (each exports the same global view)."""
    return Panel(title, (Target(expr, legend),), **kw)


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return Panel(
        title, (Target(expr),), unit=unit, description=description, kind="stat", width=6, height=4
    )


def quantiles(title: str, metric: str, by: str = "", description: str = "", **kw: Any) -> Panel:
    """p50 and p99 of a per-worker histogram (summed across workers before the quantile)."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return Panel(
        title,
        tuple(
            Target(
                f"histogram_quantile({q}, sum by ({group}) "
                f'(rate({metric}_bucket{{job=~"$job"}}[$__rate_interval])))',
                f"p{int(q * 100)}{suffix}",
            )
            for q in (0.5, 0.99)
        ),
        unit="s",
        description=description,
        **kw,
    )


RATE = "[$__rate_interval]"
W = 'window="$window"'
SW = 'window="$session_window"'


def ticket_medians(title: str, hours: str, description: str) -> Panel:
    """Median first reply, first and full resolution time; ``hours``: "" or "_business"."""
    return Panel(
        title,
        tuple(
            Target(
                "histogram_quantile(0.5, max by (le) "
                f"(engagement_ticket_{m}{hours}_seconds_bucket{{{SW}}}))",
                legend,
            )
            for m, legend in (
                ("first_reply", "first reply"),
                ("first_resolution", "first resolution"),
                ("full_resolution", "full resolution"),
            )
        ),
        unit="s",
        description=description,
    )


CAMPAIGN = f'{W}, campaign=~"$campaign"'

OVERVIEW = Dashboard(
    uid="engagement-overview",
    title="Engagement overview",
    description="Business metrics of the current windows, read from Redis by every worker "
    "(max across workers). History: the HTTP API.",
    variables=(
        Variable("window", "Window", values=("minute", "hour", "day"), default="day"),
        Variable(
            "session_window",
            "Settled window (sessions, tickets)",
            values=("minute", "hour", "day", "previous_day"),
            default="previous_day",
        ),
        labels_of("engagement_impressions", "campaign"),
        labels_of("engagement_page_views_by_page", "page"),
        labels_of("engagement_feature_users", "feature"),
        labels_of("engagement_sessions_by_platform", "platform"),
        labels_of("engagement_sessions_by_channel", "channel"),
    ),
    rows=(
        Row(
            "Active users",
            (
                stat("DAU", "max(engagement_dau)", description="Active users today (HLL)."),
                stat("WAU", "max(engagement_wau)", description="7 days to today (HLL)."),
                stat("MAU", "max(engagement_mau)", description="30 days to today (HLL)."),
                stat("Stickiness (DAU / MAU)", "max(engagement_stickiness_ratio)", "percentunit"),
                business(
                    "Active users, current $window",
                    f"max(engagement_active_users{{{W}}})",
                    "active users",
                ),
                business(
                    "Events by type, current $window",
                    f"max by (type) (engagement_events{{{W}}})",
                    "{{type}}",
                ),
                business(
                    "Page views by page, current $window",
                    f'max by (page) (engagement_page_views_by_page{{{W}, page=~"$page"}})',
                    "{{page}}",
                ),
            ),
        ),
        Row(
            "Campaigns and conversions",
            (
                business(
                    "Impressions, current $window",
                    top("engagement_impressions", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                business(
                    "Clicks, current $window",
                    top("engagement_clicks", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                business(
                    "CTR, current $window",
                    top("engagement_ctr_ratio", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                    unit="percentunit",
                ),
                business(
                    "Orphan clicks (no impression), today",
                    top("engagement_orphan_clicks", 'campaign=~"$campaign"', "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                Panel(
                    "Conversions and page views, current $window",
                    (
                        Target(f"max(engagement_conversions{{{W}}})", "conversions"),
                        Target(f"max(engagement_page_views{{{W}}})", "page views"),
                    ),
                ),
            ),
        ),
        Row(
            "Feature adoption",
            (
                business(
                    "Feature events, current $window",
                    f'max by (feature) (engagement_feature_events{{{W}, feature=~"$feature"}})',
                    "{{feature}}",
                ),
                business(
                    "Feature users today",
                    'max by (feature) (engagement_feature_users{feature=~"$feature"})',
                    "{{feature}}",
                ),
                business(
                    "Feature adoption (users / DAU)",
                    'max by (feature) (engagement_feature_adoption_ratio{feature=~"$feature"})',
                    "{{feature}}",
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Sessions (closed sessions, by window of their first event)",
            (
                business("Sessions", f"max(engagement_sessions{{{SW}}})", "sessions"),
                Panel(
                    "Session duration",
                    (
                        Target(
                            f"max(engagement_session_duration_avg_seconds{{{SW}}})",
                            "mean",
                        ),
                        Target(
                            "histogram_quantile(0.5, max by (le) "
                            f"(engagement_session_duration_seconds_bucket{{{SW}}}))",
                            "median (bucket estimate)",
                        ),
                    ),
                    unit="s",
                    description="Gauge histogram: no rate(); max across workers.",
                ),
                Panel(
                    "Engagement, bounce and conversion rate",
                    (
                        Target(f"max(engagement_session_engagement_ratio{{{SW}}})", "engaged"),
                        Target(f"max(engagement_session_bounce_ratio{{{SW}}})", "bounced"),
                        Target(f"max(engagement_session_conversion_ratio{{{SW}}})", "converted"),
                    ),
                    unit="percentunit",
                ),
                business(
                    "Pages per session",
                    f"max(engagement_pages_per_session{{{SW}}})",
                    "pages / session",
                ),
                business(
                    "Sessions by platform",
                    top(
                        "engagement_sessions_by_platform",
                        f'{SW}, platform=~"$platform"',
                        "platform",
                    ),
                    "{{platform}}",
                ),
                business(
                    "Sessions by channel",
                    top("engagement_sessions_by_channel", f'{SW}, channel=~"$channel"', "channel"),
                    "{{channel}}",
                ),
            ),
        ),
        Row(
            "Surveys (NPS, CSAT, CES)",
            (
                business("NPS, current $window", f"max(engagement_nps{{{W}}})", "NPS"),
                business(
                    "CSAT (top-2 box), current $window",
                    f"max(engagement_csat_ratio{{{W}}})",
                    "CSAT",
                    unit="percentunit",
                ),
                business("CES (mean, 1–7), current $window", f"max(engagement_ces_score{{{W}}})"),
                business(
                    "CES agree (5–7), current $window",
                    f"max(engagement_ces_agree_ratio{{{W}}})",
                    "agree",
                    unit="percentunit",
                ),
                business(
                    "Survey responses, current $window",
                    f"max by (survey) (engagement_survey_responses{{{W}}})",
                    "{{survey}}",
                    description="Hide a score computed from too few answers.",
                ),
            ),
        ),
        Row(
            "Social",
            (
                business(
                    "Social actions, current $window",
                    f"max by (action) (engagement_social_actions{{{W}}})",
                    "{{action}}",
                ),
                business(
                    "Social engagement rate, current $window",
                    f"max by (platform) (engagement_social_engagement_ratio{{{W}}})",
                    "{{platform}}",
                    unit="percentunit",
                ),
                business(
                    "Followers",
                    "max by (platform) (engagement_social_followers)",
                    "{{platform}}",
                ),
            ),
        ),
        Row(
            "Support (settled on the watermark)",
            (
                Panel(
                    "Tickets",
                    (
                        Target(f"max(engagement_tickets_created{{{SW}}})", "created"),
                        Target(f"max(engagement_tickets_solved{{{SW}}})", "solved"),
                        Target(f"max(engagement_ticket_reopens{{{SW}}})", "reopens"),
                    ),
                ),
                stat("Backlog (open now)", "max(engagement_ticket_backlog)"),
                ticket_medians(
                    "First reply and resolution time (median)",
                    "",
                    "Gauge histograms (calendar hours): no rate(); max across workers.",
                ),
                ticket_medians(
                    "First reply and resolution time, business hours (median)",
                    "_business",
                    "Only with support_business_hours enabled (docs/configuration.md). Gauge "
                    "histograms: no rate(); max across workers.",
                ),
            ),
        ),
        Row(
            "Accounts",
            (
                business(
                    "Subscription events, current $window",
                    f"max by (event) (engagement_subscription_events{{{W}}})",
                    "{{event}}",
                ),
                business("Revenue, current $window", f"max(engagement_revenue{{{W}}})", "revenue"),
                business("Customers", f"max(engagement_customers{{{W}}})", "customers"),
                Panel(
                    "Churn and retention, current $window",
                    (
                        Target(f"max(engagement_churn_ratio{{{W}}})", "churn"),
                        Target(f"max(engagement_retention_ratio{{{W}}})", "retention"),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Engagement score and churn risk",
            (
                business(
                    "Customers per engagement band",
                    "max by (band) (engagement_score_band_customers)",
                    "{{band}}",
                    description="0–40 at risk, 41–75 engaged, 76–100 highly engaged.",
                ),
                Panel(
                    "Engagement score distribution (median, p10)",
                    (
                        Target(
                            "histogram_quantile(0.5, max by (le) "
                            "(engagement_customer_score_bucket))",
                            "median",
                        ),
                        Target(
                            "histogram_quantile(0.1, max by (le) "
                            "(engagement_customer_score_bucket))",
                            "p10",
                        ),
                    ),
                    description="Gauge histogram of current scores: no rate(); max across workers.",
                ),
                Panel(
                    "Churn-risk transitions per hour",
                    (
                        Target(
                            f"sum by (reason) (rate(stream_churn_risk_transitions_total{RATE})) "
                            "* 3600",
                            "{{reason}}",
                        ),
                    ),
                    description="Published to the churn-risk topic exactly once (summed across "
                    "workers: each publishes its own partitions' transitions).",
                ),
                Panel(
                    "Score inputs relayed from other families",
                    (
                        Target(
                            f"sum by (family) (rate(stream_relay_published_total{RATE}))",
                            "published from {{family}}",
                        ),
                        Target(
                            f"sum by (outcome) (rate(stream_relay_received_total{RATE}))",
                            "received: {{outcome}}",
                        ),
                    ),
                    unit="ops",
                    description="Social, support, feedback and account events relayed into the "
                    "clickstream topic for customer scores. duplicate / out_of_order: re-sends "
                    "after a crash or a failed send, dropped (applied once).",
                ),
            ),
        ),
    ),
)

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

DASHBOARDS = (OVERVIEW, PIPELINE)


def _variable(v: Variable) -> dict[str, Any]:
    base: dict[str, Any] = {"name": v.name, "label": v.label, "hide": 0, "skipUrlSync": False}
    if v.values:
        return {
            **base,
            "type": "custom",
            "query": ",".join(v.values),
            "multi": False,
            "includeAll": False,
            "current": {"selected": True, "text": v.default, "value": v.default},
            "options": [
                {"selected": value == v.default, "text": value, "value": value}
                for value in v.values
            ],
        }
    query = f"label_values({v.metric}, {v.label_name})"
    return {
        **base,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "multi": True,
        "includeAll": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": t.expr,
                "legendFormat": t.legend or "__auto",
                "range": True,
                "refId": chr(ord("A") + i),
            }
            for i, t in enumerate(p.targets)
        ],
    }
    if p.kind == "stat":
        out["options"] = {
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    else:
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return out


def render(d: Dashboard) -> dict[str, Any]:
    """The dashboard's Grafana JSON model (schema version 39, Grafana 10/11)."""
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for row in d.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(p, pid, x, y))
            pid += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                *(_variable(v) for v in d.variables),
            ]
        },
        "panels": panels,
    }


def files() -> dict[str, str]:
    """File name -> JSON text, exactly as committed under ``deploy/grafana/dashboards/``."""
    return {f"{d.uid}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in files().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python -m stream.ops.grafana", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
