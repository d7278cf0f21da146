"""Customer scores through the real apply.lua: pending records merged in Redis (op A, ZADD LT),
read back with the state when due (es_read_keyed_split_v2) and folded in (op D)
give exactly the batch reference, over many small batches and out-of-order arrival."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys, build_layout
from stream.contract.decode import Event, Properties
from stream.engine import store
from stream.engine.deltas import Deltas, build_call
from stream.engine.keyed import fields_to_read, keeps_pending
from stream.engine.windows import Windows
from stream.metrics.score import ScoreState
from stream.metrics.score.codec import load, split_value, unpack
from stream.metrics.score.pending import merge_pending
from tests.support.score_reference import reference_scores
from tests.unit.test_score import DAY, rules_of
from tests.unit.test_score_decay import rules_of as decay_rules_of

pytestmark = pytest.mark.integration


def _same_record(got: list[Any] | None, want: list[Any] | None, *, has_state: bool) -> None:
    """Redis's record equals merge_pending's; the user is blanked behind a stored state."""
    if want is None:
        assert got is None
        return
    assert got is not None and got[1:] == want[1:]
    assert got[0] == ("" if has_state else want[0])


SHARD = "clickstream.0"


#: Half-life decay on two activities (decayed counts are capped at 64 x target, not the target).
DECAY = {"views": ("half_life", 2), "features": ("half_life", 5)}


@pytest.mark.parametrize("modes", [{}, DECAY], ids=["lookback", "decay"])
async def test_pending_records_merge_in_redis_like_the_reference(
    settings: Settings, redis_client: Any, modes: dict[str, tuple[str, int]]
) -> None:
    await store.load_function(redis_client)
    rng = random.Random(7)
    rules = rules_of(lookback=4, drop_points=15, drop_buckets=3)
    if modes:
        rules = decay_rules_of(modes, lookback=4, drop_points=15, drop_buckets=3)
    # channels that tie on the first event's time, one of them non-ASCII (bytewise order)
    channels = ["organic", "paid", "é-mail", None]
    state = ScoreState(rules, frozenset({"organic", "paid", "é-mail"}))
    keys = build_keys(settings)
    layout = build_layout(settings, Windows(settings.zone))
    raw = []
    for _ in range(400):
        user = rng.choice(["u1", "u2", "u3", "u4", "u5"])
        kind = rng.choice(["page_view", "page_view", "feature_used", "like"])
        # whole hours: one customer's events often tie on time, with different channels
        raw.append((user, kind, rng.randrange(0, 30 * 24) * 3_600_000, rng.choice(channels)))
    lateness = DAY
    events = sorted(raw, key=lambda e: e[2] + rng.randrange(0, DAY))
    bounds = [0, *sorted(rng.sample(range(1, len(events)), 60)), len(events)]
    offset, max_ts = -1, -1
    on_time: list[dict[str, Any]] = []
    transitions = []
    python_pending: dict[str, list[Any]] = {}  # merge_pending, the reference op A follows
    for lo, hi in itertools.pairwise(bounds):
        deltas = Deltas()
        for user, kind, ts, channel in events[lo:hi]:
            if ts < max_ts - lateness:
                continue
            max_ts = max(max_ts, ts)
            on_time.append({"type": kind, "user_id": user, "ts": ts, "channel": channel})
            props = Properties(channel=channel)
            handler = state.handlers().get(kind)
            if handler:
                handler(Event(f"{lo}", kind, ts, user, None, None, props), 0, deltas)
        watermark = max_ts - lateness
        items = {state.field_of(k): v for k, v in deltas.keyed.get("cus", {}).items()}
        assert keeps_pending(state)
        (stored,) = await store.read_keyed(
            redis_client,
            [
                store.KeyedRead(
                    keys.keyed(SHARD, "cus"),
                    keys.keyed_due(SHARD, "cus"),
                    fields_to_read(state, items, watermark),
                    watermark,
                    state.due_limit,
                    True,
                )
            ],
        )
        for f, (value, pend) in stored.items():
            _same_record(pend, python_pending.pop(f, None), has_state=value is not None)
        deltas.keyed_updates["cus"] = state.settle(stored, items, watermark, deltas)
        count, flat = deltas.pending.get("cus", [0, []])
        j = 0
        for _ in range(count):
            f, m = flat[j], flat[j + 6]
            rec = flat[j + 2 : j + 6] + flat[j + 7 : j + 7 + 3 * m]
            python_pending[f] = merge_pending(python_pending.get(f), rec)
            j += 7 + 3 * m
        call_keys, argv = build_call(deltas, layout, SHARD, offset, hi, max_ts, max_ts // 1000)
        (outcome,) = await store.apply_calls(
            redis_client, [store.PendingCall(SHARD, call_keys, argv)]
        )
        assert outcome.applied
        offset = hi
        transitions += [orjson.loads(m) for m in deltas.outbox.get("churn", [])]
    assert python_pending, "some activity must still be pending at the end"
    in_redis = await redis_client.hgetall(keys.keyed(SHARD, "cus"))
    for f, value in in_redis.items():
        packed, pend = split_value(value)
        _same_record(pend, python_pending.pop(f.decode(), None), has_state=packed is not None)
    assert not python_pending

    acts = {a.name: (sorted(a.events), a.weight, a.target) for a in rules.activities}
    series, expected = reference_scores(
        on_time, acts, DAY, 4, 15, 3, max_ts - lateness, modes=modes
    )
    got = [
        (t["customer"], t["ts"] // DAY, t["reason"], t["old_score"], t["new_score"])
        for t in transitions
    ]
    assert sorted(got) == sorted(expected)
    customers = {c.user: c for c in (load(v, rules) for v in in_redis.values())}
    for value in in_redis.values():  # the evaluated state alone has the same score
        assert unpack(value, len(rules.activities)).score == load(value, rules).score
    for user, scores in series.items():
        if scores:
            assert customers[user].score == scores[-1][1], user
    # the first event's channel: the smallest (ts, channel), channels compared by code point
    for user, c in customers.items():
        first = min((e["ts"], e["channel"] or "(not set)") for e in on_time if e["user_id"] == user)
        assert (c.first_ts, c.channel) == first, user
        assert c.last_ts == max(e["ts"] for e in on_time if e["user_id"] == user)
