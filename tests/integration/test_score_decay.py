"""Half-life decay on the real engine: the simulator's fading cohort decays into at_risk with no
event of its own, and Redis, the read side, the gauges and the churn-risk topic all equal the
batch reference (which walks the written decay definition boundary by boundary).

Same shortened time scales as test_churn_risk (hour buckets, an hour of lateness).
"""

from __future__ import annotations

import pytest

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
from tests.integration.test_churn_risk import (
    assert_fading_cohort_ends_at_risk,
    expected,
    read_topic,
    simulated,
)
from tests.support.harness import (
    EngineHarness,
    at_risk_members,
    publish_events,
    stored_customers,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

HOUR = 3600


def decay_settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        allowed_lateness_seconds=HOUR,
        score=ScoreSettings(
            bucket_seconds=HOUR,
            lookback_seconds=24 * HOUR,
            drop_window_seconds=12 * HOUR,
            activities={
                "page_views": ScoreActivity(
                    events=["page_view", "screen_view"], weight=40, target=6,
                    half_life_seconds=6 * HOUR,
                ),
                "feature_use": ScoreActivity(
                    events=["feature_used"], weight=30, target=2, half_life_seconds=12 * HOUR
                ),
                # a lookback of its own next to the decayed ones
                "clicks": ScoreActivity(
                    events=["click"], weight=20, target=3, lookback_seconds=36 * HOUR
                ),
                "renewals": ScoreActivity(events=["subscription_renewed"], weight=10, target=1),
            },
        ),
    )  # fmt: skip


async def test_decayed_scores_fade_the_cohort_like_the_reference(settings: Settings) -> None:
    s = decay_settings(settings)
    events = simulated(days=4)
    series, transitions = expected(events, s)
    scored = assert_fading_cohort_ends_at_risk(series, transitions)
    # decay moves scores between events: far more distinct scores than change boundaries alone
    assert any(len({sc for _, sc in series[u]}) > 10 for u in scored)

    keys = build_keys(s)
    client = store.connect(redis_target(s))
    async with EngineHarness(s) as harness:
        await publish_events(s, events)
        await wait_caught_up(s)
        assert harness.engine is not None
        engine = harness.engine

        def owned() -> list[tuple[str, int]]:
            return engine.owned_shards(s.topics.clickstream)

        state = next(k for k in build_keyed_states(s) if isinstance(k, ScoreState))
        assert state.rules.decays
        n = len(state.rules.activities)
        decaying = 0
        for value in await stored_customers(client, s):
            c = unpack(value, n)
            if series.get(c.user):
                assert c.score == series[c.user][-1][1], c.user
                decaying += bool(c.decayed)
        assert decaying, "some customers must still hold decayed amounts"
        want_at_risk = {u for u, sc in series.items() if sc and sc[-1][1] <= 40}
        assert await at_risk_members(client, s) == want_at_risk

        reader = Reader(client, keys)
        some = sorted(u for u in scored if series[u][-1][1] > 0) or sorted(scored)
        body = await score_read.customer(reader, state.rules, some[0])
        assert body is not None and body["score"] == series[some[0]][-1][1]
        assert sum(a["points"] for a in body["activities"]) == pytest.approx(body["score"], abs=1)
        gauges = {m.name: m for m in await score_read.gauge_families(reader)}
        bands = {
            x.labels["band"]: x.value for x in gauges["engagement_score_band_customers"].samples
        }
        assert bands["at_risk"] == len(want_at_risk)
        assert sum(bands.values()) == sum(1 for sc in series.values() if sc)

        publisher = OutboxPublisher(
            client, keys, OUTBOX, s.topics.churn_risk, s.kafka_bootstrap_servers, owned,
            WorkerMetrics().churn_risk_transitions,
        )  # fmt: skip
        await publisher.on_start()
        while await publisher.drain_once():
            pass
        await publisher.on_stop()
    await client.aclose()

    published = await read_topic(s)
    got = sorted(
        (m["customer"], m["ts"] // (HOUR * 1000), m["reason"], m["old_score"], m["new_score"])
        for m in published
    )
    assert got == sorted(transitions)
