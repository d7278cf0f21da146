"""Other families' events reach customer scores through the relay into the clickstream topic
(stream/engine/relay.py), on the real engine: scores and health as the batch reference says,
and each relayed activity counted exactly once across publisher crashes, a zombie publisher and
failed sends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import orjson
import pytest

from stream.config.settings import ScoreActivity, ScoreSettings, Settings
from stream.config.wiring import build_keyed_states, build_keys, relay_config
from stream.contract.types import FAMILY_OF
from stream.engine import store
from stream.engine.consumer import BatchEngine
from stream.engine.relay import RelayPublisher
from stream.engine.worker_metrics import WorkerMetrics
from stream.infra.connections import redis_target
from stream.metrics.reader import Reader
from stream.metrics.score import ScoreState
from stream.metrics.score import read as score_read
from stream.metrics.score.codec import load
from stream.tools.simulate import SimulationConfig, Simulator
from tests.support.events import event
from tests.support.harness import (
    EngineHarness,
    counter_values,
    publish_events,
    publish_raw,
    stored_customers,
    wait_caught_up,
    wait_relayed,
)
from tests.support.reference import partition_of
from tests.support.score_reference import reference_health, reference_scores

pytestmark = pytest.mark.integration

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
CLICKS = {t.value for t, f in FAMILY_OF.items() if f.value == "clickstream"}


def _settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        allowed_lateness_seconds=3600,
        score=ScoreSettings(
            bucket_seconds=3600,
            lookback_seconds=24 * 3600,
            drop_window_seconds=12 * 3600,
            activities={
                "page_views": ScoreActivity(events=["page_view"], weight=40, target=4),
                "social": ScoreActivity(events=["like", "comment", "share"], weight=20, target=3),
                "purchases": ScoreActivity(
                    events=["purchase", "subscription_renewed"], weight=20, target=1
                ),
                "support_contacts": ScoreActivity(events=["ticket_created"], weight=20, target=1),
            },
            health_weights={"engagement": 50, "feedback": 30, "support": 20},
            reply_target_seconds=2 * 3600,
        ),
    )


def _customers() -> list[dict[str, Any]]:
    """Hand-made customers: each one's score or health depends on another family."""
    t = T0 + 30 * HOUR  # within the lookback (24 h) of the final watermarks (T0 + 47 h)
    ev: list[dict[str, Any]] = []
    ev += [event("page_view", "c0", t + i * 60_000, page="/") for i in range(4)]  # control
    ev += [event("page_view", "c1", t + i * 60_000, page="/") for i in range(2)]
    ev += [event(k, "c1", t + HOUR + i, post_id="p") for i, k in enumerate(["like", "comment"])]
    # c2: no clickstream at all: its score is made of relayed activities only
    ev += [event("purchase", "c2", t, amount=10.0), event("share", "c2", t + 1000, post_id="p")]
    ev += [event("page_view", "c3", t, page="/")]
    ev += [event("nps_response", "c3", t + 1000, score=3)]
    ev += [event("nps_response", "c3", t + 2 * HOUR, score=9)]  # the latest answer wins
    ev += [event("page_view", "c4", t, page="/"), event("csat_response", "c4", t, score=2)]
    ev += [event("ticket_created", "c4", t + 1000, ticket_id="T1", channel="email")]
    ev += [event("ticket_replied", "c4", t + 5 * HOUR, ticket_id="T1", author="agent")]
    ev += [event("ticket_created", "c4", t + 6 * HOUR, ticket_id="T2")]
    ev += [event("ticket_solved", "c4", t + 7 * HOUR, ticket_id="T2")]
    ev += [event("ticket_created", "c5", t, ticket_id="T3")]  # open, never answered
    ev += [event("ticket_replied", "c5", t + HOUR, ticket_id="T3", author="requester")]
    ev += [event("subscription_renewed", "c5", t + HOUR, plan="pro", amount=20.0)]
    # a user whose only event is a Segment track call on the account topic (normalised)
    return ev


SEGMENT_RENEWAL = {
    "type": "track",
    "event": "Subscription Renewed",
    "messageId": "seg-1",
    "userId": "c6",
    "timestamp": T0 + 31 * HOUR,
    "properties": {"plan": "pro", "amount": 9.5},
}


def _clocks(partitions: int) -> list[dict[str, Any]]:
    """Page views of one user per partition up to T0 + 48 h: each partition's watermark."""
    users: dict[int, str] = {}
    for i in itertools.count():
        users.setdefault(partition_of(f"clock{i}", partitions), f"clock{i}")
        if len(users) == partitions:
            break
    return [
        event("page_view", u, T0 + h * HOUR, page="/") for u in users.values() for h in range(49)
    ]


async def test_other_families_move_scores_and_health_as_the_reference_says(
    settings: Settings,
) -> None:
    s = _settings(settings)
    customers = _customers()
    clocks = _clocks(s.topic_partitions)
    async with EngineHarness(s, relay=True) as harness:
        # Other families first (their relays are then in before the clickstream's watermark).
        await publish_events(s, [e for e in customers if e["type"] not in CLICKS])
        await publish_raw(s, s.topics.account, [(b"c6", orjson.dumps(SEGMENT_RENEWAL))])
        await wait_relayed(s)
        await publish_events(s, [e for e in customers if e["type"] in CLICKS] + clocks)
        await wait_caught_up(s)
        received = counter_values(harness.metrics, "stream_relay_received", "outcome")
        published = counter_values(harness.metrics, "stream_relay_published", "family")
    relayable = [e for e in customers if e["type"] not in CLICKS]
    assert received["applied"] == len(relayable) + 1
    assert published["account"] == 3  # purchase, renewals
    assert "duplicate" not in received

    # the reference, per home partition at its final watermark
    normalised = {
        "event_id": "seg-1",
        "type": "subscription_renewed",
        "user_id": "c6",
        "ts": T0 + 31 * HOUR,
        "properties": {"plan": "pro", "amount": 9.5},
    }
    everything = [*customers, normalised, *clocks]
    sc = s.score
    acts = {k: (a.events, a.weight, a.target) for k, a in sc.activities.items()}
    by_part: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in everything:
        by_part[partition_of(e["user_id"], s.topic_partitions)].append(e)
    want: dict[str, tuple[int, int]] = {}
    weights = (50, 30, 20)
    for evs in by_part.values():
        watermark = max(e["ts"] for e in evs if e["type"] in CLICKS) - 3600 * 1000
        series, _ = reference_scores(evs, acts, HOUR, 24, sc.drop_points, 12, watermark)
        for user, scores in series.items():
            mine = [e for e in evs if e["user_id"] == user]
            score = scores[-1][1]
            health = reference_health(mine, score, weights, 2 * HOUR, watermark=watermark)
            want[user] = (score, health)
    # every customer's score depends on another family, except c0's (control)
    assert not {"c2", "c5", "c6"} & {e["user_id"] for e in everything if e["type"] in CLICKS}
    assert (want["c1"][0], want["c2"][0], want["c5"][0], want["c6"][0]) == (33, 27, 40, 20)
    assert want["c3"][1] != want["c3"][0] and want["c4"][1] != want["c4"][0]

    keys = build_keys(s)
    client = store.connect(redis_target(s))
    try:
        state = next(k for k in build_keyed_states(s) if isinstance(k, ScoreState))
        got: dict[str, tuple[int, int]] = {}
        for value in await stored_customers(client, s):
            c = load(value, state.rules)
            got[c.user] = (c.score, c.health)
        assert got == want
        body = await score_read.customer(Reader(client, keys), state.rules, "c1")
        assert body is not None
        assert {a["activity"]: (a["count"], a["missing"]) for a in body["activities"]} == {
            "page_views": (2, False),
            "social": (2, False),
            "purchases": (0, False),
            "support_contacts": (0, False),
        }
    finally:
        await client.aclose()


# ---- exactly once -------------------------------------------------------------------------


class CrashEveryOtherTrim(RelayPublisher):
    """Dies after Kafka acked a lane's run and before Redis forgot it, every other time."""

    trims = 0

    async def _trim(self, key: str, seq: int) -> None:
        CrashEveryOtherTrim.trims += 1
        if CrashEveryOtherTrim.trims % 2:
            raise SystemExit("crash between publish and trim")
        await super()._trim(key, seq)


class _LossyProducer:
    """Fails every fifth send without sending it; the sends after it do reach Kafka (a gap)."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.calls = 0

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        self.calls += 1
        if self.calls % 5 == 0:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("send failed"))
            return failed
        return await self.producer.send(*args, **kwargs)

    async def stop(self) -> None:
        await self.producer.stop()


def _publisher(cls: type[RelayPublisher], s: Settings, engine: BatchEngine) -> RelayPublisher:
    relay = relay_config(s)
    assert relay is not None
    families = relay.families
    topics = {t: f for f, t in s.topics.model_dump().items()}

    def owned() -> list[tuple[str, int]]:
        return [
            (st.shard, h)
            for tp, st in engine.partitions.items()
            if topics[tp.topic] in families
            for h in range(engine.home_partitions)
        ]

    return cls(
        store.connect(redis_target(s)),
        build_keys(s),
        "relay",
        s.topics.clickstream,
        s.kafka_bootstrap_servers,
        owned,
        WorkerMetrics().relay_published,
    )


def _counts(events: list[dict[str, Any]], s: Settings) -> dict[str, dict[tuple[int, int], int]]:
    """Reference: per user, (hour bucket, activity index) -> count (targets are never reached)."""
    index = {e: i for i, a in enumerate(s.score.activities.values()) for e in a.events}
    out: dict[str, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        if e["type"] in index:
            out[e["user_id"]][(e["ts"] // HOUR, index[e["type"]])] += 1
    return {u: dict(c) for u, c in out.items()}


async def test_each_relayed_activity_counts_once_across_crashes_zombies_and_failed_sends(
    settings: Settings,
) -> None:
    s = settings.with_overrides(
        score=ScoreSettings(
            bucket_seconds=3600,
            lookback_seconds=30 * 24 * 3600,
            # targets far above any count: a double count would show
            activities={
                "social": ScoreActivity(
                    events=["like", "comment", "share", "save"], weight=40, target=5000
                ),
                "account": ScoreActivity(
                    events=["purchase", "subscription_started", "email_opened"],
                    weight=30,
                    target=5000,
                ),
                "support": ScoreActivity(
                    events=["ticket_created", "ticket_replied"], weight=20, target=5000
                ),
                "surveys": ScoreActivity(
                    events=["nps_response", "csat_response"], weight=10, target=5000
                ),
            },
        )
    )
    cfg = SimulationConfig(seed=5, users=150)
    events = []
    for sim_event in Simulator(cfg).events():
        if sim_event.ts_ms >= cfg.start_ms + 3 * 86_400_000:
            break
        if sim_event.event["type"] not in CLICKS and sim_event.event["type"] != "identify":
            events.append(sim_event.event)
    want = _counts(events, s)
    relayable = sum(sum(c.values()) for c in want.values())
    assert relayable > 300
    async with EngineHarness(s) as harness:  # no relay publisher of its own: driven here
        assert harness.engine is not None
        engine = harness.engine
        await publish_events(s, events)
        await wait_caught_up(s)

        crashing = _publisher(CrashEveryOtherTrim, s, engine)
        await crashing.on_start()
        for _ in range(6):
            with pytest.raises(SystemExit):
                while await crashing.drain_once():
                    pass
        await crashing.on_stop()
        await crashing.redis.aclose()

        lossy = _publisher(RelayPublisher, s, engine)
        await lossy.on_start()
        lossy._producer = _LossyProducer(lossy._producer)  # type: ignore[assignment]
        for _ in range(3):
            await lossy.drain_once()
        await lossy.on_stop()
        await lossy.redis.aclose()

        # the new owner, and a zombie that has not noticed it lost the partitions yet
        fresh, zombie = _publisher(RelayPublisher, s, engine), _publisher(RelayPublisher, s, engine)
        await asyncio.gather(fresh.on_start(), zombie.on_start())
        while sum(await asyncio.gather(fresh.drain_once(), zombie.drain_once())):
            pass
        await asyncio.gather(fresh.on_stop(), zombie.on_stop())
        await asyncio.gather(fresh.redis.aclose(), zombie.redis.aclose())
        await wait_relayed(s)
        received = counter_values(harness.metrics, "stream_relay_received", "outcome")
    assert received["applied"] == relayable + sum(
        1 for e in events if e["type"] in ("ticket_solved", "ticket_reopened", "ticket_closed")
    )
    assert received["duplicate"] > 0 and received["out_of_order"] > 0
    assert "rejected" not in received

    client = store.connect(redis_target(s))
    try:
        state = next(k for k in build_keyed_states(s) if isinstance(k, ScoreState))
        got: dict[str, dict[tuple[int, int], int]] = {}
        for value in await stored_customers(client, s):
            c = load(value, state.rules)
            got[c.user] = {
                (k, i): n for k, counts in c.buckets.items() for i, n in enumerate(counts) if n
            }
        assert {u: c for u, c in got.items() if c} == want
    finally:
        await client.aclose()
