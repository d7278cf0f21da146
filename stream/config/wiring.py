"""Wiring: settings in, domain objects out — the one place that turns configuration into the
decoder, the metric folds and keyed states, the store layout, the batch engine, the outbox
publishers and the read side.

faust-free on purpose: the faust shell (:mod:`stream.service.app`), the tools (bench, engine
profile, CLI queries) and the test harness all build their objects here, so none of them can wire
the engine differently from a worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from stream.config.settings import Settings
from stream.contract.decode import Decoder
from stream.engine import store
from stream.engine.consumer import BatchEngine, EngineConfig
from stream.engine.deltas import Layout
from stream.engine.dlq import DlqPolicy, SendFn
from stream.engine.fold import FoldContext, Handler
from stream.engine.keyed import KeyedState
from stream.engine.keys import Keys
from stream.engine.outbox import OutboxPublisher
from stream.engine.relay import RelayConfig, RelayPublisher
from stream.engine.windows import CALENDAR_GRANULARITIES, Windows
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.connections import kafka_client_kwargs, redis_target
from stream.metrics.accounts import AccountsFold, SubscriptionState
from stream.metrics.clickstream import ClickstreamFold
from stream.metrics.feedback import FeedbackFold
from stream.metrics.labels import BoundedLabels
from stream.metrics.reader import Reader
from stream.metrics.score import HOME_FAMILY, OUTBOX, Activity, ScoreRules, ScoreState
from stream.metrics.score import STATE as SCORE_STATE
from stream.metrics.sessions import SessionRules, SessionState
from stream.metrics.social import SocialFold
from stream.metrics.spec import MetricOptions
from stream.metrics.support import TicketState

__all__ = [
    "build_churn_publisher",
    "build_decoder",
    "build_engine",
    "build_fold_context",
    "build_handlers",
    "build_keyed_states",
    "build_keys",
    "build_layout",
    "build_reader",
    "build_relay_publisher",
    "build_windows",
    "metric_options",
    "relay_config",
    "score_rules",
    "session_rules",
]


def metric_options(settings: Settings) -> MetricOptions:
    """The deployment choices that change what a metric means (the read side's view of them)."""
    return MetricOptions(
        frozenset(settings.tracked_pages),
        settings.bounce_definition,
        tuple(settings.granularities),
        settings.max_future_skew_seconds,
        settings.support_business_hours.enabled,
        settings.sessions_enabled,
        settings.score.enabled,
        settled_minutes=settings.retention.minute
        > settings.allowed_lateness_seconds + settings.session_timeout_seconds,
        gross_margin=settings.gross_margin,
    )


def build_keys(settings: Settings) -> Keys:
    """Key names under this deployment's prefix and placement."""
    return Keys(settings.key_prefix, settings.redis_placement)


def build_windows(settings: Settings) -> Windows:
    """Window and calendar-period arithmetic in the deployment's zone and first weekday."""
    return Windows(settings.zone, settings.week_start)


def build_reader(settings: Settings) -> Reader:
    """A read-side client of the store (its own connection)."""
    return Reader(
        store.connect(redis_target(settings)), build_keys(settings), build_windows(settings)
    )


def build_decoder(settings: Settings) -> Decoder:
    return Decoder(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew_ms=int(settings.max_future_skew_seconds * 1000),
        segment_event_map=settings.segment_event_map,
        csat_min=settings.csat_min,
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
        csat_min=settings.csat_min,
        home_families=frozenset({HOME_FAMILY, *s.relay_families}),
        business_hours=settings.business_hours(),
    )


def relay_config(settings: Settings) -> RelayConfig | None:
    """Which families relay customer-score inputs into the home topic (stream.engine.relay);
    None when scores are off (nothing to relay)."""
    if not settings.score.enabled:
        return None
    return RelayConfig(
        state=SCORE_STATE,
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
    states.append(
        SubscriptionState(
            windows=build_windows(settings),
            granularities=(*settings.granularities, *CALENDAR_GRANULARITIES),
        )
    )
    if settings.score.enabled:
        states.append(
            ScoreState(
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
    customers = next((k for k in states if k.name == SCORE_STATE), None)
    return FoldContext(
        decoder=build_decoder(settings),
        handlers=build_handlers(settings, windows, states),
        passive_events=frozenset(settings.passive_events),
        passive_authors=frozenset(settings.passive_authors),
        lateness_ms=int(settings.allowed_lateness_seconds * 1000),
        # relayed records reach customer scores only: their own topic counted them
        relay_handlers={}
        if customers is None
        else {t: (h,) for t, h in customers.handlers().items()},
    )


def build_layout(settings: Settings, windows: Windows) -> Layout:
    return Layout(
        build_keys(settings),
        windows,
        tuple(settings.granularities),
        settings.retention,
        int(settings.allowed_lateness_seconds),
    )


def build_churn_publisher(
    settings: Settings, engine: BatchEngine, metrics: WorkerMetrics
) -> OutboxPublisher:
    """Churn-risk transitions of the partitions this worker owns, to ``topics.churn_risk``."""
    home = settings.topics.clickstream

    def owned() -> list[tuple[str, int]]:
        return engine.owned_shards(home)

    return OutboxPublisher(
        store.connect(redis_target(settings)),
        build_keys(settings),
        OUTBOX,
        settings.topics.churn_risk,
        settings.kafka_bootstrap_servers,
        owned,
        metrics.churn_risk_transitions,
        kafka_client_kwargs(settings),
    )


def build_relay_publisher(
    settings: Settings, engine: BatchEngine, metrics: WorkerMetrics
) -> RelayPublisher:
    """Relay lanes of the source partitions this worker owns, to ``topics.clickstream``."""
    families = settings.topics.families()
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
        build_keys(settings),
        "relay",
        settings.topics.clickstream,
        settings.kafka_bootstrap_servers,
        owned,
        metrics.relay_published,
        kafka_client_kwargs(settings),
        backlog=metrics.relay_backlog,
    )


def build_engine(
    settings: Settings,
    metrics: WorkerMetrics,
    send: SendFn,
    *,
    clock: Callable[[], float] = time.time,
    keyed_states: list[KeyedState] | None = None,
    **config: Any,
) -> BatchEngine:
    """The batch engine of a worker; ``config`` overrides :class:`EngineConfig` fields (the test
    harness shortens the batch timeout and the group timings)."""
    windows = build_windows(settings)
    states = keyed_states if keyed_states is not None else build_keyed_states(settings)
    engine_config = EngineConfig(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        topic_family=settings.topics.families(),
        dlq_topic=settings.topics.dlq,
        batch_max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        dedupe_window_events=settings.dedupe_window_events,
        client_kwargs=kafka_client_kwargs(settings),
        dlq_policy=DlqPolicy(give_up_after_s=settings.dlq_give_up_seconds),
        relay=relay_config(settings),
        store_check_interval_s=settings.store_check_interval_seconds,
        session_timeout_ms=int(settings.consumer_session_timeout_seconds * 1000),
    )
    engine_config = dataclasses.replace(engine_config, **config)
    return BatchEngine(
        engine_config,
        redis_target(settings),
        build_keys(settings),
        build_layout(settings, windows),
        build_fold_context(settings, windows, states),
        metrics,
        send,
        clock=clock,
        keyed_states=states,
    )
