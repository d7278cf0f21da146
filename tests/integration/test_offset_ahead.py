"""Redis ahead of Kafka (issue 19): the topics were recreated empty (here: the worker is pointed
at new topics over the same store), so Redis holds offsets the new logs have not reached. The
worker must not treat the new records as applied: it refuses those partitions and says so, and
`stream reset` lets the operator start them over, after which the new records count."""

from __future__ import annotations

import asyncio
import time

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.config.settings import Settings, TopicNames
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


def gauge(harness: EngineHarness, name: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for m in harness.metrics.registry.collect()
        if m.name == name
        for s in m.samples
    }


async def test_a_store_ahead_of_its_log_is_refused_until_reset(settings: Settings) -> None:
    now = int(time.time() * 1000)
    old = [event("page_view", f"u{i}", now - 90_000 + i, page="/") for i in range(40)]
    async with EngineHarness(settings):
        await publish_events(settings, old)
        await wait_caught_up(settings)

    # The "recreated" topics: same store, new empty logs, a few new records.
    new_settings = settings.with_overrides(
        topics=TopicNames.with_prefix(settings.key_prefix + "-again")
    )
    new = [event("click", f"u{i}", now - 30_000 + i, campaign="c", placement="p")
           for i in range(6)]  # fmt: skip
    await publish_events(new_settings, new)
    topic = new_settings.topics.clickstream
    async with EngineHarness(new_settings) as harness:
        assert harness.engine is not None
        refused = {tp.partition for tp in harness.engine.ahead if tp.topic == topic}
        assert refused  # every clickstream partition the old records reached
        ahead = gauge(harness, "stream_partition_offset_ahead")
        assert {k for k, v in ahead.items() if v == 1} == {(topic, str(p)) for p in refused}
        assert len(ahead) == 5 * new_settings.topic_partitions  # 0 for every other one
        await asyncio.sleep(3)  # a store check passes: still refused, nothing applied
        assert {tp.partition for tp in harness.engine.ahead} == refused
        assert not await compare_all(new_settings, Reference.build(old, new_settings), ("day",))

        env = {
            "REDIS_URL": settings.redis_url,
            "STREAM_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
            "STREAM_KEY_PREFIX": settings.key_prefix,
            "STREAM_TOPICS__CLICKSTREAM": topic,
        }
        # the CLI runs its own event loop: in a thread, as from an operator's shell
        dry = await asyncio.to_thread(CliRunner().invoke, cli, ["reset", "--topic", topic], env=env)
        assert dry.exit_code == 0, dry.output
        assert "dry run" in dry.output and not await compare_all(
            new_settings, Reference.build(old, new_settings), ("day",)
        )
        args = ["reset", "--topic", topic, "--apply"]
        done = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
        assert done.exit_code == 0, done.output

        await wait_caught_up(new_settings, timeout=30)
        assert not harness.engine.ahead
        assert set(gauge(harness, "stream_partition_offset_ahead").values()) == {0.0}
        # the new log's records count, and nothing of the old one is left
        problems = await compare_all(new_settings, Reference.build(new, new_settings), ("day",))
        assert not problems, problems[:10]
