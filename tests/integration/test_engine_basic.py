"""The engine against the real broker and Redis, on small hand-made streams."""

from __future__ import annotations

import pytest

from stream.settings import Settings
from tests.support.compare import compare_all
from tests.support.events import event
from tests.support.harness import EngineHarness, publish_events, wait_caught_up
from tests.support.reference import Reference

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def small_stream() -> list[dict[str, object]]:
    evs = []
    for i in range(40):
        user = f"u{i % 13}"
        ts = T0 + i * 97_000
        evs.append(event("page_view", user, ts, page="/pricing" if i % 3 else "/home"))
        evs.append(event("impression", user, ts + 1000, campaign="spring", placement="top"))
        if i % 4 == 0:
            evs.append(event("click", user, ts + 2000, campaign="spring", placement="top"))
        if i % 7 == 0:  # orphan: no impression of this campaign+placement that day
            evs.append(event("click", user, ts + 3000, campaign="winter", placement="side"))
        if i % 5 == 0:
            evs.append(event("feature_used", user, ts + 4000, feature="export"))
        if i % 9 == 0:
            evs.append(event("conversion", user, ts + 5000, campaign="spring"))
        evs.append(event("like", user, ts + 6000, platform="twitter", post_id="p1"))
    # a second day, so WAU/MAU span days
    evs.append(event("page_view", "u99", T0 + 86_400_000 + 5, page="/"))
    return evs


async def test_small_stream_matches_reference(settings: Settings) -> None:
    events = small_stream()
    async with EngineHarness(settings):
        await publish_events(settings, events)
        await wait_caught_up(settings)
    ref = Reference.build(events, settings)
    assert ref.value("orphan_clicks", "day", ref.windows("day")[0], {}) > 0
    problems = await compare_all(settings, ref)
    assert not problems, "\n".join(problems[:20])
