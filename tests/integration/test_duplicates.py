"""Producer resends (same event_id, new offset) are counted once, also across a worker change."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from stream.config.settings import Settings
from stream.contract.types import Reason
from tests.support.compare import compare_all
from tests.support.events import clickstream_mix
from tests.support.harness import (
    EngineHarness,
    counter_total,
    publish_events,
    read_dlq,
    wait_caught_up,
)
from tests.support.reference import Reference

pytestmark = pytest.mark.integration


def _rejected(harness: EngineHarness, reason: Reason) -> float:
    return counter_total(harness.metrics, "stream_events_rejected", reason=reason.value)


async def test_resends_are_dead_lettered_once_and_never_counted(settings: Settings) -> None:
    rng = random.Random(7)
    t0 = int(time.time() * 1000) - 3_600_000
    first, second = clickstream_mix(400, t0), clickstream_mix(400, t0 + 700_000)
    resent_first = rng.sample(first, 40)  # resent after the worker changed: needs the warm-up
    resent_second = rng.sample(second, 25)
    tail: list[dict[str, Any]] = second + resent_first + resent_second
    rng.shuffle(tail)  # resends interleave with new events (each user's order is kept by key)
    tail.sort(key=lambda e: e["ts"])

    async with EngineHarness(settings):
        await publish_events(settings, first)
        await wait_caught_up(settings)
    await publish_events(settings, tail)
    async with EngineHarness(settings) as harness:  # a new owner of every partition
        await wait_caught_up(settings)
        duplicates = _rejected(harness, Reason.DUPLICATE)
    dlq = await read_dlq(settings, expected=65)
    assert duplicates == 65
    assert sorted(r["reason"] for r in dlq) == ["duplicate"] * 65
    ref = Reference.build(first + second, settings)
    problems = await compare_all(settings, ref)
    assert not problems, "\n".join(problems[:20])
