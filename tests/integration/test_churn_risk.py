"""Customer scores on the real engine: the simulator's fading cohort, silent re-scoring, and
exactly-once publication of churn-risk transitions across a publisher crash. Renewals arrive on
the account topic and reach the scores through the relay into the clickstream topic.

Time scales are shortened (hour buckets, a day of lookback, an hour of lateness) so a few
simulated days show customers fading; the rules are the same at the defaults.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, generate_latest

from stream.config.settings import ScoreActivity, ScoreSettings, Settings
from stream.config.wiring import build_keyed_states, build_keys
from stream.engine import store
from stream.engine.outbox import OutboxPublisher
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.connections import redis_target
from stream.metrics.reader import Reader
from stream.metrics.score import OUTBOX, ScoreState
from stream.metrics.score import read as score_read
from stream.metrics.score.codec import unpack
from stream.serving.exporter import _Static
from stream.tools.simulate import SimulationConfig, Simulator
from tests.support.harness import (
    EngineHarness,
    at_risk_members,
    counter_values,
    publish_events,
    stored_customers,
    wait_caught_up,
    wait_relayed,
)
from tests.support.reference import partition_of
from tests.support.score_reference import reference_scores

pytestmark = pytest.mark.integration

HOUR = 3_600_000
CFG = SimulationConfig(seed=11, users=80, fading_fraction=0.3, fade_seconds=2 * 86400)


def score_settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        allowed_lateness_seconds=3600,
        score=ScoreSettings(
            bucket_seconds=3600,
            lookback_seconds=24 * 3600,
            drop_window_seconds=12 * 3600,
            activities={  # targets for a day of lookback
                "page_views": ScoreActivity(
                    events=["page_view", "screen_view"], weight=40, target=10
                ),
                "feature_use": ScoreActivity(events=["feature_used"], weight=30, target=3),
                "clicks": ScoreActivity(events=["click"], weight=20, target=3),
                # other families' activities: relayed to the clickstream partitions
                "account_and_social": ScoreActivity(
                    events=["subscription_renewed", "purchase", "like", "comment", "share"],
                    weight=10,
                    target=2,
                ),
            },
        ),
    )


def simulated(days: float) -> list[dict[str, Any]]:
    end = CFG.start_ms + int(days * 86_400_000)
    out = []
    for e in Simulator(CFG).events():
        if e.ts_ms >= end:
            break
        out.append(e.event)
    return out


CLICKS = {"page_view", "screen_view", "impression", "click", "conversion", "feature_used"}


def expected(events: list[dict[str, Any]], s: Settings) -> tuple[dict[str, Any], list[Any]]:
    """The reference per clickstream partition (each has its own final watermark, which relayed
    events do not move); a user's events of every family count where their clickstream is."""
    sc = s.score
    acts = {k: (a.events, a.weight, a.target) for k, a in sc.activities.items()}
    modes = {
        k: ("half_life", a.half_life_seconds // sc.bucket_seconds)
        if a.half_life_seconds
        else ("lookback", (a.lookback_seconds or sc.lookback_seconds) // sc.bucket_seconds)
        for k, a in sc.activities.items()
    }
    by_part: dict[int, list[dict[str, Any]]] = defaultdict(list)
    max_ts: dict[int, int] = defaultdict(lambda: -1)
    for e in events:
        p = partition_of(e["user_id"], s.topic_partitions)
        by_part[p].append(e)
        if e["type"] in CLICKS:
            max_ts[p] = max(max_ts[p], e["ts"])
    series: dict[str, Any] = {}
    transitions: list[Any] = []
    for p, evs in by_part.items():
        part_series, part_transitions = reference_scores(
            evs,
            acts,
            sc.bucket_seconds * 1000,
            sc.lookback_seconds // sc.bucket_seconds,
            sc.drop_points,
            sc.drop_window_seconds // sc.bucket_seconds,
            max_ts[p] - int(s.allowed_lateness_seconds * 1000),
            modes=modes,
        )
        series |= part_series
        transitions += part_transitions
    return series, transitions


class CrashBeforeTrim(OutboxPublisher):
    """Dies after Kafka acked a batch and before Redis forgot it: the worst moment."""

    async def _trim(self, key: str, seq: int) -> None:
        raise SystemExit("crash between publish and trim")


async def read_topic(s: Settings) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        s.topics.churn_risk,
        bootstrap_servers=s.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                return out
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()


def assert_fading_cohort_ends_at_risk(series: Any, transitions: Any) -> list[str]:
    """The reference's fading users cross into at_risk, and (nearly all of them) end there:
    silence alone brought their scores down. A fading user whose early activity still fills the
    lookback at the end may not have crossed yet. Returns the fading users with a score."""
    fading = Simulator(CFG).fading_users()
    entered = {t[0] for t in transitions if t[2] == "entered_at_risk"}
    assert entered & fading, "the fading cohort must cross into at_risk"
    scored = [u for u in fading if series.get(u)]
    assert sum(series[u][-1][1] <= 40 for u in scored) >= 0.9 * len(scored)
    return scored


async def test_fading_cohort_and_exactly_once_churn_risk(settings: Settings) -> None:
    s = score_settings(settings)
    events = simulated(days=4)
    series, transitions = expected(events, s)
    scored = assert_fading_cohort_ends_at_risk(series, transitions)
    entered = {t[0] for t in transitions if t[2] == "entered_at_risk"}

    keys = build_keys(s)
    client = store.connect(redis_target(s))
    assert {e["type"] for e in events} >= {"purchase", "like", "nps_response", "ticket_created"}
    clicks_only, _ = expected([e for e in events if e["type"] in CLICKS], s)
    moved = [u for u, sc in series.items() if sc and clicks_only.get(u) != sc]
    assert len(moved) >= 5, "relayed activities must move some scores"
    async with EngineHarness(s, relay=True) as harness:
        # Other families first: relayed records are judged late against the clickstream's
        # watermark, so they must be in before the clickstream moves it past them (the whole
        # simulated stream is published within seconds here; live traffic relays within ~1 s).
        await publish_events(s, [e for e in events if e["type"] not in CLICKS])
        await wait_relayed(s)
        await publish_events(s, [e for e in events if e["type"] in CLICKS])
        await wait_caught_up(s)
        received = counter_values(harness.metrics, "stream_relay_received", "outcome")
        assert received.get("applied", 0) > 0 and not received.get("rejected")
        assert harness.engine is not None
        engine = harness.engine

        def owned() -> list[tuple[str, int]]:
            return engine.owned_shards(s.topics.clickstream)

        # Scores and bands in Redis equal the reference at each partition's final watermark.
        state = next(k for k in build_keyed_states(s) if isinstance(k, ScoreState))
        n = len(state.rules.activities)
        for value in await stored_customers(client, s):
            c = unpack(value, n)
            if series.get(c.user):
                assert c.score == series[c.user][-1][1], c.user
        want_at_risk = {u for u, sc in series.items() if sc and sc[-1][1] <= 40}
        assert await at_risk_members(client, s) == want_at_risk

        # Read side: one customer, the at-risk list page by page, the band gauges.
        reader = Reader(client, keys)
        some = sorted(scored)[0]
        body = await score_read.customer(reader, state.rules, some)
        assert body is not None and body["score"] == series[some][-1][1]
        assert body["band"] == "at_risk"
        listed, cursor = [], None
        while True:
            page = await score_read.at_risk(reader, 7, cursor)
            listed += [(c["score"], c["customer"]) for c in page["customers"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert listed == sorted((series[u][-1][1], u) for u in want_at_risk)
        gauges = {m.name: m for m in await score_read.gauge_families(reader)}
        bands = {
            s.labels["band"]: s.value for s in gauges["engagement_score_band_customers"].samples
        }
        assert bands["at_risk"] == len(want_at_risk)
        assert sum(bands.values()) == sum(1 for sc in series.values() if sc)
        (gsum,) = [
            x for x in gauges["engagement_customer_score"].samples if x.name.endswith("_gsum")
        ]
        assert gsum.value == sum(sc[-1][1] for sc in series.values() if sc)
        registry = CollectorRegistry()
        registry.register(_Static(list(gauges.values())))
        assert b"engagement_customer_score_gsum" in generate_latest(registry)

        metrics = WorkerMetrics()
        crashing = CrashBeforeTrim(
            client, keys, OUTBOX, s.topics.churn_risk, s.kafka_bootstrap_servers, owned,
            metrics.churn_risk_transitions,
        )  # fmt: skip
        await crashing.on_start()
        with pytest.raises(SystemExit):
            for _ in owned():
                await crashing.drain_once()
        await crashing.on_stop()
        # A new owner: recovers from the output topic's tail, publishes the rest exactly once.
        fresh = OutboxPublisher(
            client, keys, OUTBOX, s.topics.churn_risk, s.kafka_bootstrap_servers, owned,
            metrics.churn_risk_transitions,
        )  # fmt: skip
        await fresh.on_start()
        while await fresh.drain_once():
            pass
        await fresh.on_stop()
    await client.aclose()

    published = await read_topic(s)
    ids = [m["id"] for m in published]
    assert len(ids) == len(set(ids)), "a transition was published twice"
    got = sorted(
        (m["customer"], m["ts"] // (s.score.bucket_seconds * 1000), m["reason"], m["old_score"],
         m["new_score"])
        for m in published
    )  # fmt: skip
    assert got == sorted(transitions)
    assert {m["customer"] for m in published if m["reason"] == "entered_at_risk"} == entered
