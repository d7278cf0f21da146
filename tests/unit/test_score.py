"""Engagement score math and the customer keyed state against the batch reference."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stream.config.settings import ScoreActivity, ScoreSettings, Settings
from stream.config.wiring import score_rules
from stream.contract.decode import Event, Properties
from stream.engine.deltas import Deltas
from stream.engine.keyed import fields_to_read, updates_by_field
from stream.metrics.labels import NOT_SET, OTHER
from stream.metrics.score import ScoreRules, ScoreState
from stream.metrics.score.codec import pack, unpack
from stream.metrics.score.evaluation import Customer, blend, engagement_score
from stream.metrics.score.pending import absorb_pending, merge_pending
from stream.metrics.score.touch import ScoreTouch
from tests.support.score_reference import reference_scores

DAY = 86_400_000
ACTIVITIES = {
    "views": (["page_view"], 50, 4),
    "features": (["feature_used"], 30, 2),
    "social": (["like"], 20, 1),  # another family: relayed to the home partitions
}


def rules_of(
    lookback: int = 5,
    drop_points: int = 20,
    drop_buckets: int = 3,
    relay: list[Any] | None = None,  # score.relay_families; None: the default (all)
) -> ScoreRules:
    more = {} if relay is None else {"relay_families": relay}
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        score=ScoreSettings(
            activities={
                k: ScoreActivity(events=e, weight=w, target=t)
                for k, (e, w, t) in ACTIVITIES.items()
            },
            bucket_seconds=86400,
            lookback_seconds=lookback * 86400,
            drop_points=drop_points,
            drop_window_seconds=drop_buckets * 86400,
            **more,
        ),
    )
    return score_rules(s)


def test_weights_not_summing_to_100_are_refused() -> None:
    with pytest.raises(ValidationError, match="weights must sum to 100, not 90"):
        ScoreSettings(activities={"a": ScoreActivity(events=["page_view"], weight=90, target=1)})


def test_unknown_event_types_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown event types"):
        ScoreSettings(activities={"a": ScoreActivity(events=["teleport"], weight=100, target=1)})


def test_relayed_families_count_with_their_full_weight() -> None:
    rules = (
        rules_of()
    )  # social is relayed by default: every factor is present, nothing renormalised
    assert rules.present() == (True, True, True)
    assert engagement_score([4, 2, 0], rules) == 80
    assert engagement_score([4, 2, 1], rules) == 100
    assert engagement_score([1, 1, 1], rules) == 48  # 12.5 + 15 + 20 = 47.5 -> 48 (half up)


def test_score_renormalises_missing_factors_and_saturates() -> None:
    rules = rules_of(relay=[])  # social is not relayed: a missing factor on the home partitions
    assert rules.present() == (True, True, False)
    # views 50 and features 30 are present (clickstream); social (20) is missing: /80.
    assert engagement_score([4, 2, 0], rules) == 100
    assert engagement_score([100, 0, 5], rules) == 63  # 50/80 = 62.5 -> 63 (half up)
    assert engagement_score([1, 1, 0], rules) == 34  # (12.5 + 15) / 80 * 100 = 34.375
    assert rules_of(relay=["account", "support"]).present() == (True, True, False)


def test_blend_drops_missing_parts() -> None:
    assert blend([(60, 50), (25, None), (15, 100)]) == 60  # (3000 + 1500) / 75
    assert blend([(60, None), (40, None)]) == 0


def _event(kind: str, user: str, ts: int) -> dict[str, Any]:
    return {"type": kind, "user_id": user, "ts": ts}


#: Types of another family: on a home partition they are relayed records, which are judged late
#: against the watermark like any event but do not move it (stream/engine/relay.py).
RELAYED = frozenset({"like"})


def _moves_watermark(e: dict[str, Any]) -> bool:
    return e["type"] not in RELAYED


def on_time_events(arrival: list[dict[str, Any]], lateness: int) -> list[dict[str, Any]]:
    """The events of an arrival order that the fold accepts (not behind the watermark)."""
    on_time: list[dict[str, Any]] = []
    running = -1
    for e in arrival:
        if e["ts"] >= running - lateness:
            on_time.append(e)
            if _moves_watermark(e):
                running = max(running, e["ts"])
    return on_time


def _run_stream(
    events: list[dict[str, Any]], cuts: list[int], rules: ScoreRules, lateness: int
) -> tuple[dict[str, Customer], list[tuple[str, int, str, int, int]], int]:
    """Drive ScoreState.settle as the engine does: batches in arrival order, a store of
    fields, pending records and due times, the read of what ``plan`` names plus what is due at
    the watermark, pending records merged as apply.lua's op A does (ZADD LT)."""
    state = ScoreState(rules, frozenset({"organic"}))
    store: dict[str, str] = {}
    pending: dict[str, list[Any]] = {}
    due: dict[str, int] = {}
    transitions = []
    max_ts = -1
    bounds = [0, *sorted(set(cuts)), len(events)]
    import orjson

    for lo, hi in itertools.pairwise(bounds):
        deltas = Deltas()
        for e in events[lo:hi]:
            if e["ts"] < max_ts - lateness:
                continue  # late: the fold would dead-letter it
            if _moves_watermark(e):
                max_ts = max(max_ts, e["ts"])
            ev = Event(f"{lo}", e["type"], e["ts"], e["user_id"], None, None, Properties())
            handler = state.handlers().get(e["type"])
            if handler:
                handler(ev, e["ts"] // 60_000 * 60, deltas)
        watermark = max_ts - lateness
        items: dict[str, list[Any]] = {
            state.field_of(k): v for k, v in deltas.keyed.get("cus", {}).items()
        }
        wanted = set(fields_to_read(state, items, watermark))
        wanted |= {f for f, d in due.items() if d <= watermark}
        stored = {
            f: (
                store[f].encode() if f in store else None,
                msgspec.msgpack.decode(msgspec.msgpack.encode(pending[f]))
                if f in pending
                else None,
            )
            for f in wanted
        }
        updates = state.settle(stored, items, watermark, deltas)
        for f, (value, at) in updates_by_field(updates).items():
            assert value is not None
            store[f] = value
            pending.pop(f, None)  # a new value replaces the record (it was folded in)
            if at is None or at < 0:
                due.pop(f, None)
            else:
                due[f] = at
        count, flat = deltas.pending.get("cus", [0, []])
        j = 0
        for _ in range(count):
            f, at, m = flat[j], flat[j + 1], flat[j + 6]
            assert f not in wanted  # merged without a read
            record = flat[j + 2 : j + 6] + flat[j + 7 : j + 7 + 3 * m]
            j += 7 + 3 * m
            pending[f] = merge_pending(pending.get(f), record)
            due[f] = min(at, due.get(f, at))
        assert j == len(flat)
        for msg in deltas.outbox.get("churn", []):
            m = orjson.loads(msg)
            transitions.append(
                (m["customer"], m["ts"] // DAY, m["reason"], m["old_score"], m["new_score"])
            )
    customers = {c.user: c for c in (unpack(v, len(rules.activities)) for v in store.values())}
    for f, record in pending.items():  # as the read side sees them
        c = customers.get(record[0]) if f in store else Customer(record[0])
        assert c is not None
        absorb_pending(c, record, rules)
        customers[c.user] = c
    return customers, transitions, max_ts - lateness


user_events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.sampled_from(["page_view", "feature_used", "like", "click"]),
        st.integers(0, 40 * DAY),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    raw=user_events,
    cuts=st.lists(st.integers(0, 80), max_size=6),
    lookback=st.integers(1, 6),
    drop_points=st.integers(5, 40),
    shuffle=st.randoms(use_true_random=False),
    relay=st.booleans(),
)
def test_stream_equals_batch_reference(
    raw: list[tuple[str, str, int]],
    cuts: list[int],
    lookback: int,
    drop_points: int,
    shuffle: Any,
    relay: bool,
) -> None:
    """Any arrival order within the lateness and any batch cuts give the reference's result,
    with the social family relayed to the home partitions (its likes count) or not (missing)."""
    lateness = 2 * DAY
    events = sorted((_event(k, u, ts) for u, k, ts in raw), key=lambda e: e["ts"])
    if not relay:
        events = [e for e in events if e["type"] not in RELAYED]
    # displace arrival by up to a day (inside the lateness; relays by up to two: late ones are
    # then dead-lettered), then keep what is on time
    arrival = sorted(
        events,
        key=lambda e: e["ts"] + shuffle.randrange(0, DAY if _moves_watermark(e) else 3 * DAY),
    )
    rules = rules_of(lookback, drop_points, 3, None if relay else [])
    customers, transitions, watermark = _run_stream(arrival, cuts, rules, lateness)
    on_time = on_time_events(arrival, lateness)
    acts = {k: (e, w, t) for k, (e, w, t) in ACTIVITIES.items()}
    families = {"clickstream", "social"} if relay else {"clickstream"}
    series, expected = reference_scores(
        on_time, acts, DAY, lookback, drop_points, 3, watermark, families
    )
    assert sorted(transitions) == sorted(expected)
    for user, scores in series.items():
        if scores:
            assert customers[user].score == scores[-1][1], user


def test_silence_lowers_the_score_into_at_risk_without_events() -> None:
    rules = rules_of(lookback=5)
    events = [_event("page_view", "quiet", d * DAY + 1000) for d in range(5) for _ in range(4)]
    events += [_event("feature_used", "quiet", d * DAY + 2000) for d in range(5) for _ in range(2)]
    # another user's events move the watermark on; "quiet" sends nothing more
    events += [_event("click", "busy", d * DAY) for d in range(5, 12)]
    customers, transitions, _ = _run_stream(events, list(range(0, len(events), 3)), rules, 0)
    assert customers["quiet"].score == 0
    reasons = [t[2] for t in transitions if t[0] == "quiet"]
    assert "entered_at_risk" in reasons and "dropped" in reasons


def test_packed_state_round_trips_and_stays_small() -> None:
    rules = score_rules(Settings(_env_file=None))  # type: ignore[call-arg]
    c = Customer("user-123456", evaluated=20_000, score=57, health=61, first_ts=1, channel="paid")
    n = len(rules.activities)
    for k in range(19_970, 20_000):
        c.buckets[k] = [3, 1, 0, 2] + [0] * (n - 4)
    c.history = [(19_995, 70), (19_999, 57)]
    c.recent = [(19_990, "dropped", 80, 57)]
    text = pack(c)
    assert unpack(text, n) == c
    assert len(text) < 260, len(text)


@pytest.mark.parametrize("business", [False, True], ids=["calendar", "business-hours"])
def test_health_judges_first_replies_in_business_time_when_the_mode_is_on(business: bool) -> None:
    """A ticket opened Friday 16:00 in Berlin and answered Monday 10:00: 66 calendar hours (the
    full penalty of a 8 h target), 2 business hours on a 09:00-17:00 week (no penalty)."""
    import dataclasses
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from stream.metrics.business_hours import BusinessHours
    from stream.metrics.score.evaluation import ActivityHit, advance
    from tests.support.business_reference import BruteBusinessHours
    from tests.support.score_reference import reference_health

    week = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    berlin = ZoneInfo("Europe/Berlin")
    opened = int(datetime(2026, 3, 6, 16, 0, tzinfo=berlin).timestamp() * 1000)  # a Friday
    replied = int(datetime(2026, 3, 9, 10, 0, tzinfo=berlin).timestamp() * 1000)
    rules = dataclasses.replace(
        rules_of(),
        health_weights=(0, 0, 100),  # the support part alone
        reply_target_ms=8 * 3_600_000,
        business_hours=BusinessHours.build(week, "Europe/Berlin") if business else None,
    )
    c = Customer("u1")
    hits = [
        ActivityHit(opened, "ticket_created", "organic", "t1", -1, ""),
        ActivityHit(replied, "ticket_replied", "organic", "t1", -1, "agent"),
    ]
    advance(c, hits, replied + 3 * DAY, rules)
    assert c.last_reply_ms == (2 if business else 66) * 3_600_000
    events = [
        {"type": "ticket_created", "ts": opened, "properties": {"ticket_id": "t1"}},
        {"type": "ticket_replied", "ts": replied,
         "properties": {"ticket_id": "t1", "author": "agent"}},
    ]  # fmt: skip
    brute = BruteBusinessHours.of(week, "Europe/Berlin") if business else None
    want = reference_health(events, 0, (0, 0, 100), 8 * 3_600_000, brute)
    assert c.health_at(0, rules) == want == (80 if business else 40)  # t1 is still open


def _summary_by_definition(state: ScoreState, events: list[ScoreTouch]) -> tuple[list[Any], int]:
    """A customer's pending record as the rule says, event by event (buckets in the order the
    events first reach them)."""
    counts: dict[tuple[int, int], int] = {}
    for e in events:
        for i in state._index[e.type]:
            key = (e.ts_ms // state.rules.bucket_ms, i)
            counts[key] = counts.get(key, 0) + 1
    first = min(e.ts_ms for e in events)
    channels = [e.channel for e in events if e.ts_ms == first]
    labels = [NOT_SET if c is None else c if c == "organic" else OTHER for c in channels]
    rec: list[Any] = [events[0].user_id, max(e.ts_ms for e in events), first, min(labels)]
    for (bucket, i), count in counts.items():
        rec += (bucket, i, count)
    return rec, min(bucket for bucket, _ in counts)


@given(
    touches=st.lists(
        st.tuples(
            st.sampled_from(["page_view", "feature_used", "like"]),
            st.integers(0, 5 * DAY),
            st.sampled_from([None, "organic", "paid"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_batch_summary_follows_the_definition(
    touches: list[tuple[str, int, str | None]],
) -> None:
    """One customer's additive touches in a batch become its pending record (op A)."""
    state = ScoreState(rules_of(), frozenset({"organic"}))
    events = [
        ScoreTouch(f"e{j}", kind, ts, "u1", channel, None, None, None, None)
        for j, (kind, ts, channel) in enumerate(touches)
    ]
    assert state._summary(events) == _summary_by_definition(state, events)
