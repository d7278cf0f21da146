"""The demo's warm start on the real broker and Redis: its history reaches the worker without a
single dead letter.

Published all at once, the clicks of the history carry the home partitions' watermark to the
present within seconds, while the likes and email opens of the same minutes still travel
through the relay: thousands of them were rejected as ``late`` on every demo start. Paced at
the demo's catch-up speed, in event-time order across topics, the relayed activities arrive
within the lateness. Both runs are made, so the test shows the fault it guards against.
"""

from __future__ import annotations

import time

import pytest

from stream.cli import simulation_config
from stream.config.settings import Settings
from stream.tools.demo import DEMO_TIMING, DemoTraffic
from stream.tools.emit import EmitPlan, publish
from stream.tools.publish import BatchPublisher
from stream.tools.simulate import Simulator
from tests.support.harness import EngineHarness, counter_total, wait_relayed

pytestmark = pytest.mark.integration


def demo_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's own topics, group and keys with the demo's timing and score settings."""
    for key, value in DEMO_TIMING.items():
        monkeypatch.setenv(key, value)
    own = ("kafka_bootstrap_servers", "redis_url", "redis_cluster", "topics", "consumer_group",
           "key_prefix", "topic_partitions")  # fmt: skip
    return Settings(_env_file=None, **{k: getattr(settings, k) for k in own})  # type: ignore[call-arg]


@pytest.mark.parametrize("speed", [None, DemoTraffic().catch_up_speed], ids=["at-once", "paced"])
async def test_the_demo_history_reaches_the_worker_without_dead_letters(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, speed: float | None
) -> None:
    s = demo_settings(settings, monkeypatch)
    traffic = DemoTraffic(users=600, history_seconds=240, fade_after_seconds=120)
    now_ms = int(time.time() * 1000)
    config = simulation_config(
        s, seed=traffic.seed, users=traffic.users, start_ms=traffic.start_ms(now_ms),
        activity=traffic.activity, fade_seconds=traffic.fade_seconds,
        fade_after=traffic.fade_after_seconds,
    )  # fmt: skip
    plan = EmitPlan(live=True, stop_at_ms=now_ms, catch_up_speed=speed)
    async with EngineHarness(s, relay=True) as harness:
        assert harness.relay_publisher is not None
        harness.relay_publisher.interval_s = 0.2  # the worker's own pace, not the tests' 50 ms
        async with BatchPublisher.from_settings(s) as publisher:
            sent = await publish(Simulator(config).events(), plan, publisher, s.topics.by_family())
        await wait_relayed(s, timeout=120)
        late = counter_total(harness.metrics, "stream_events_rejected", reason="late")
        rejected = counter_total(harness.metrics, "stream_events_rejected")
        relayed = counter_total(harness.metrics, "stream_relay_received")
    assert sent > 5_000 and relayed > 500  # the relay carries a share of the history
    if speed is None:
        assert late > 100, "published at once, relayed history should arrive late"
    else:
        assert rejected == 0, f"{rejected:.0f} dead letters ({late:.0f} late)"
