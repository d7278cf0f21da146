"""Real ``stream worker`` processes SIGKILLed while they relay other families' events into the
clickstream topic: every relayed activity still counts exactly once in its customer's state.

Only non-clickstream events are published, so no relayed record can be late (the clickstream's
watermark never moves) and the per-customer counts must equal the reference exactly. Targets are
far above any count, so a double count (a re-send applied twice) or a loss would show.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from stream.config.settings import ScoreActivity, ScoreSettings, Settings
from stream.config.wiring import build_keyed_states
from stream.engine import store
from stream.infra.connections import redis_target
from stream.metrics.score import ScoreState
from stream.metrics.score.codec import load
from tests.e2e.test_crash_rebalance_outage import publish_in_chunks, simulated_events
from tests.integration.test_relay import CLICKS, _counts
from tests.support.harness import stored_customers, wait_relayed
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e


async def test_sigkill_during_relay_counts_each_activity_once(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.with_overrides(
        score=ScoreSettings(
            bucket_seconds=3600,
            lookback_seconds=30 * 24 * 3600,
            activities={
                "social": ScoreActivity(
                    events=["like", "comment", "share"], weight=40, target=5000
                ),
                "account": ScoreActivity(
                    events=["purchase", "subscription_started", "email_opened"],
                    weight=30,
                    target=5000,
                ),
                "support": ScoreActivity(events=["ticket_created"], weight=20, target=5000),
                "surveys": ScoreActivity(events=["nps_response"], weight=10, target=5000),
            },
        ),
    )
    events = [
        e for e in simulated_events(40_000, seed=21) if e["type"] not in CLICKS | {"identify"}
    ]
    want = _counts(events, s)
    assert sum(sum(c.values()) for c in want.values()) > 1200
    rng = random.Random(3)
    worker = WorkerProcess(s, tmp_path, "w").start()
    try:
        worker.wait_ready()

        async def kill(i: int) -> None:
            nonlocal worker
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # mid-batch, mid-relay
            worker.kill()
            worker = WorkerProcess(s, tmp_path, f"w{i}").start()
            worker.wait_ready(120)

        await publish_in_chunks(s, events, chunks=3, between=kill)
        await wait_relayed(s, timeout=300)
    finally:
        worker.stop()

    client = store.connect(redis_target(s))
    try:
        state = next(k for k in build_keyed_states(s) if isinstance(k, ScoreState))
        got: dict[str, dict[tuple[int, int], int]] = {}
        for value in await stored_customers(client, s):
            c = load(value, state.rules)
            counts = {(k, i): n for k, row in c.buckets.items() for i, n in enumerate(row) if n}
            if counts:
                got[c.user] = counts
        assert got == want
    finally:
        await client.aclose()
