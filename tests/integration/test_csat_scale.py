"""CSAT on a 0–5 scale end to end: zeros are accepted (no dead letter) and count as unsatisfied
answers in csat and csat_responses, equal to the batch reference; on the default 1–5 the same
zeros are out_of_range dead letters and the rest still match."""

from __future__ import annotations

import random
import time

import pytest

from stream.config.settings import Settings
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, read_dlq, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration

CSAT_METRICS = ("csat", "csat_responses")


def answers(t0: int) -> list[dict[str, object]]:
    rng = random.Random(3)
    return [
        event("csat_response", f"u{i % 23}", t0 + i * 97_000, score=rng.randint(0, 5),
              touchpoint=rng.choice(["in_app", "email"]))
        for i in range(400)
    ]  # fmt: skip


@pytest.mark.parametrize("scale", ["0-5", "1-5"])
async def test_csat_scale_end_to_end(settings: Settings, scale: str) -> None:
    s = settings.with_overrides(csat_scale=scale, feedback_touchpoints=["in_app", "email"])
    t0 = (int(time.time() * 1000) // 86_400_000 - 2) * 86_400_000
    events = answers(t0)
    zeros = [e for e in events if e["properties"]["score"] == 0]  # type: ignore[index]
    assert zeros
    async with EngineHarness(s):
        await publish_events(s, events)
        await wait_caught_up(s)
        if scale == "1-5":
            dlq = await read_dlq(s, expected=len(zeros))
            assert {r["reason"] for r in dlq} == {"out_of_range"}
    accepted = events if scale == "0-5" else [e for e in events if e not in zeros]
    ref = Reference.build(accepted, s)
    problems = await compare_all(s, ref, ("hour", "day", "week"), CSAT_METRICS)
    assert not problems, "\n".join(problems[:20])
