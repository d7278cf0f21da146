"""Composition root: build the faust application (and everything it runs) from settings.

Nothing in the package imports a global app; this module wires settings into the decoder, the
metric folds, the batch engine, the HTTP API and the exporter, and hands back one object.
faust provides the shell — worker lifecycle and signals, the producer (dead letters), the web
server (API, ``/metrics``, health) — while the hot path is the batched
:class:`~stream.engine.consumer.BatchEngine` service.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import web_auth
from stream.connections import faust_broker_credentials, kafka_client_kwargs, redis_target
from stream.contract.decode import Decoder
from stream.contract.types import Family
from stream.engine import store
from stream.engine.consumer import BatchEngine, EngineConfig
from stream.engine.deltas import Layout
from stream.engine.dlq import DlqPolicy
from stream.engine.fold import FoldContext, Handler
from stream.engine.keyed import KeyedState
from stream.engine.keys import Keys
from stream.engine.outbox import OutboxPublisher
from stream.engine.relay import RelayConfig, RelayPublisher
from stream.engine.windows import Windows
from stream.exporter import BusinessExporter
from stream.metrics import customer_reader
from stream.metrics.accounts import AccountsFold, SubscriptionState
from stream.metrics.catalog import MetricOptions
from stream.metrics.clickstream import ClickstreamFold
from stream.metrics.customers import NAME as CUSTOMERS
from stream.metrics.customers import OUTBOX, CustomerState
from stream.metrics.feedback import FeedbackFold
from stream.metrics.labels import BoundedLabels
from stream.metrics.reader import QueryError, Reader
from stream.metrics.score import HOME_FAMILY, Activity, ScoreRules
from stream.metrics.sessions import SessionRules, SessionState
from stream.metrics.social import SocialFold
from stream.metrics.support import TicketState
from stream.observability import WorkerMetrics
from stream.query import UnknownMetric, customer_report, list_metrics, run_query
from stream.settings import Settings
from stream.topics import ensure_topics

log = logging.getLogger(__name__)

#: What the customer API answers in a deployment that keeps no scores.
SCORE_OFF = "customer scores are off in this deployment (score.enabled = false)"


def topic_families(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return {
        t.clickstream: Family.CLICKSTREAM.value,
        t.social: Family.SOCIAL.value,
        t.support: Family.SUPPORT.value,
        t.feedback: Family.FEEDBACK.value,
        t.account: Family.ACCOUNT.value,
    }


def build_decoder(settings: Settings) -> Decoder:
    return Decoder(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew_ms=int(settings.max_future_skew_seconds * 1000),
        segment_event_map=settings.segment_event_map,
    )


def session_rules(settings: Settings) -> SessionRules:
    return SessionRules(
        timeout_ms=int(settings.session_timeout_seconds * 1000),
        cap_ms=int(settings.session_cap_seconds * 1000),
        engaged_after_ms=int(settings.engaged_session_seconds * 1000),
        platforms=frozenset(settings.session_platforms),
        channels=frozenset(settings.session_channels),
    )


def score_rules(settings: Settings) -> ScoreRules:
    s = settings.score
    w = s.health_weights
    return ScoreRules(
        activities=tuple(
            Activity(
                name,
                frozenset(a.events),
                a.weight,
                a.target,
                None if a.lookback_seconds is None else a.lookback_seconds // s.bucket_seconds,
                (a.half_life_seconds or 0) // s.bucket_seconds,
            )
            for name, a in s.activities.items()
        ),
        bucket_ms=s.bucket_seconds * 1000,
        lookback_buckets=s.lookback_seconds // s.bucket_seconds,
        drop_points=s.drop_points,
        drop_buckets=s.drop_window_seconds // s.bucket_seconds,
        health_weights=(w.get("engagement", 0), w.get("feedback", 0), w.get("support", 0)),
        reply_target_ms=s.reply_target_seconds * 1000,
        home_families=frozenset({HOME_FAMILY, *s.relay_families}),
        business_hours=settings.business_hours(),
    )


def relay_config(settings: Settings) -> RelayConfig | None:
    """Which families relay customer-score inputs into the home topic (stream.engine.relay);
    None when scores are off (nothing to relay)."""
    if not settings.score.enabled:
        return None
    return RelayConfig(
        state=CUSTOMERS,
        home_family=HOME_FAMILY,
        home_topic=settings.topics.clickstream,
        families=frozenset(settings.score.relay_families),
    )


def build_keyed_states(settings: Settings) -> list[KeyedState]:
    """The keyed states this deployment keeps; sessions and scores can be switched off.

    Those two are most of a clickstream event's cost (each touches a user's stored state every
    batch), so a deployment that needs neither does not pay for them.
    """
    states: list[KeyedState] = []
    if settings.sessions_enabled:
        states.append(SessionState(session_rules(settings)))
    states.append(
        TicketState(
            BoundedLabels(settings.ticket_channels),
            BoundedLabels(settings.ticket_priorities),
            ttl_ms=int(settings.ticket_state_ttl_seconds * 1000),
            business_hours=settings.business_hours(),
        )
    )
    states.append(SubscriptionState())
    if settings.score.enabled:
        states.append(
            CustomerState(
                score_rules(settings),
                frozenset(settings.session_channels),
                settings.score.due_limit,
            )
        )
    return states


def build_handlers(
    settings: Settings, windows: Windows, keyed_states: list[KeyedState] | None = None
) -> dict[str, tuple[Handler, ...]]:
    """Every metric family's handler for each event type, in a fixed order."""
    handlers: dict[str, tuple[Handler, ...]] = {}
    sources: list[dict[str, Handler]] = [
        ClickstreamFold(windows, frozenset(settings.tracked_pages)).handlers(),
        FeedbackFold(BoundedLabels(settings.feedback_touchpoints)).handlers(),
        SocialFold(BoundedLabels(settings.social_platforms)).handlers(),
        AccountsFold().handlers(),
    ]
    for keyed in keyed_states if keyed_states is not None else build_keyed_states(settings):
        sources.append(keyed.handlers())
    for source in sources:
        for event_type, handler in source.items():
            handlers[event_type] = (*handlers.get(event_type, ()), handler)
    return handlers


def build_fold_context(
    settings: Settings, windows: Windows, keyed_states: list[KeyedState] | None = None
) -> FoldContext:
    states = keyed_states if keyed_states is not None else build_keyed_states(settings)
    customers = next((k for k in states if k.name == CUSTOMERS), None)
    return FoldContext(
        decoder=build_decoder(settings),
        handlers=build_handlers(settings, windows, states),
        passive_events=frozenset(settings.passive_events),
        lateness_ms=int(settings.allowed_lateness_seconds * 1000),
        # relayed records reach customer scores only: their own topic counted them
        relay_handlers={}
        if customers is None
        else {t: (h,) for t, h in customers.handlers().items()},
    )


def build_layout(settings: Settings, windows: Windows) -> Layout:
    return Layout(
        Keys(settings.key_prefix),
        windows,
        tuple(settings.granularities),
        settings.retention,
        int(settings.allowed_lateness_seconds),
    )


def build_churn_publisher(
    settings: Settings, engine: BatchEngine, keys: Keys, metrics: WorkerMetrics
) -> OutboxPublisher:
    """Churn-risk transitions of the partitions this worker owns, to ``topics.churn_risk``."""
    home = settings.topics.clickstream

    def owned() -> list[tuple[str, int]]:
        return engine.owned_shards(home)

    return OutboxPublisher(
        store.connect(redis_target(settings)),
        keys,
        OUTBOX,
        settings.topics.churn_risk,
        settings.kafka_bootstrap_servers,
        owned,
        metrics.churn_risk_transitions,
        kafka_client_kwargs(settings),
    )


def build_relay_publisher(
    settings: Settings, engine: BatchEngine, keys: Keys, metrics: WorkerMetrics
) -> RelayPublisher:
    """Relay lanes of the source partitions this worker owns, to ``topics.clickstream``."""
    families = topic_families(settings)
    relaying = frozenset(settings.score.relay_families)

    def owned() -> list[tuple[str, int]]:
        lanes = range(engine.home_partitions)
        return [
            (st.shard, h)
            for tp, st in engine.partitions.items()
            if families[tp.topic] in relaying
            for h in lanes
        ]

    return RelayPublisher(
        store.connect(redis_target(settings)),
        keys,
        "relay",
        settings.topics.clickstream,
        settings.kafka_bootstrap_servers,
        owned,
        metrics.relay_published,
        kafka_client_kwargs(settings),
        backlog=metrics.relay_backlog,
    )


@dataclass
class Application:
    app: faust.App
    engine: BatchEngine
    metrics: WorkerMetrics
    settings: Settings


def _throwaway_datadir() -> str:
    path = tempfile.mkdtemp(prefix="engagement-stream-faust-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def build_app(settings: Settings) -> Application:
    if not settings.kafka_bootstrap_servers or not settings.redis_url:
        raise ValueError("build_app needs kafka_bootstrap_servers and redis_url (see localstack)")
    windows = Windows(settings.zone)
    keys = Keys(settings.key_prefix)
    metrics = WorkerMetrics()
    keyed_states = build_keyed_states(settings)
    app = faust.App(
        f"{settings.consumer_group}-shell",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        # faust keeps table files under its data dir (default: ./<app id>-data in the working
        # directory); state lives in Redis here, so a throwaway directory does.
        datadir=_throwaway_datadir(),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.topic_partitions,
        # Tansu (and a cold KRaft broker) otherwise holds the first group join ~30 s.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        producer_acks=-1,
        broker_credentials=faust_broker_credentials(settings),
        # faust's own pages (partition routing, table contents) serve nothing here.
        web_router_enabled=False,
        web_tables_enabled=False,
    )
    token = web_auth.load_token(settings)
    web_auth.install(app, token)
    if token is None and settings.web_host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("HTTP API and /metrics on %s without a bearer token", settings.web_host)

    async def send(topic: str, key: bytes | None, value: bytes) -> Any:
        return await app.producer.send(topic, key, value, None, None, None)

    engine = BatchEngine(
        EngineConfig(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            topic_family=topic_families(settings),
            dlq_topic=settings.topics.dlq,
            batch_max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            dedupe_window_events=settings.dedupe_window_events,
            client_kwargs=kafka_client_kwargs(settings),
            dlq_policy=DlqPolicy(give_up_after_s=settings.dlq_give_up_seconds),
            relay=relay_config(settings),
        ),
        redis_target(settings),
        keys,
        build_layout(settings, windows),
        build_fold_context(settings, windows, keyed_states),
        metrics,
        send,
        keyed_states=keyed_states,
    )
    # The customer state is the only writer of both outboxes: no scores, no publishers.
    publishers = (
        [
            build_churn_publisher(settings, engine, keys, metrics),
            build_relay_publisher(settings, engine, keys, metrics),
        ]
        if settings.score.enabled
        else []
    )
    reader_client = store.connect(redis_target(settings))
    reader = Reader(reader_client, keys)
    exporter = BusinessExporter(
        reader,
        windows,
        settings.granularities,
        settings.max_label_values,
        MetricOptions.from_settings(settings),
    )
    options = MetricOptions.from_settings(settings)

    @app.task  # type: ignore[untyped-decorator]
    async def start_engine() -> None:
        await ensure_topics(settings)
        await app.add_runtime_dependency(engine)
        for publisher in publishers:
            await app.add_runtime_dependency(publisher)

    @app.page("/api/v1/metrics")
    async def metrics_index(view: faust.web.View, request: faust.web.Request) -> Any:
        return view.json({"metrics": list_metrics()})

    @app.page("/api/v1/metrics/{name}")
    async def metric_series(view: faust.web.View, request: faust.web.Request, name: str) -> Any:
        try:
            body = await run_query(name, dict(request.query), reader, windows, options)
        except UnknownMetric:
            return view.json({"error": f"unknown metric {name!r}"}, status=404)
        except QueryError as exc:
            return view.json({"error": str(exc)}, status=400)
        return view.json(body)

    rules = score_rules(settings)

    @app.page("/api/v1/customers/{user_id}")
    async def customer_page(view: faust.web.View, request: faust.web.Request, user_id: str) -> Any:
        if not settings.score.enabled:
            return view.json({"error": SCORE_OFF}, status=404)
        body = await customer_report(user_id, reader, rules)
        if body is None:
            return view.json({"error": "unknown customer"}, status=404)
        return view.json(body)

    @app.page("/api/v1/customers")
    async def customers_page(view: faust.web.View, request: faust.web.Request) -> Any:
        if not settings.score.enabled:
            return view.json({"error": SCORE_OFF}, status=404)
        try:
            _, limit, cursor = customer_reader.list_params(dict(request.query))
        except ValueError as exc:
            return view.json({"error": str(exc)}, status=400)
        return view.json(await customer_reader.at_risk(reader, limit, cursor))

    @app.page("/metrics")
    async def prometheus(view: faust.web.View, request: faust.web.Request) -> Any:
        try:
            payload = await exporter.render(metrics.registry)
        except Exception as exc:  # Redis down: still expose operational series
            log.warning("business gauges unavailable: %s", type(exc).__name__)
            payload = generate_latest(metrics.registry)
        return view.bytes(payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(view: faust.web.View, request: faust.web.Request) -> Any:
        return view.json({"status": "ok", "time": time.time()})

    @app.page("/readyz")
    async def readyz(view: faust.web.View, request: faust.web.Request) -> Any:
        try:
            await reader_client.ping()
        except Exception:
            return view.json({"ready": False, "reason": "redis unreachable"}, status=503)
        if not engine.ready.is_set():
            return view.json({"ready": False, "reason": "no partition assignment yet"}, status=503)
        return view.json({"ready": True, "partitions": len(engine.partitions)})

    return Application(app, engine, metrics, settings)
