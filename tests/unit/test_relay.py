"""The relay of other families' score inputs into the home topic (stream/engine/relay.py): the
home side's sequence filter, the publisher protocol it relies on, the envelope, and the fold's
side path for relayed records."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context, build_keyed_states
from stream.contract.decode import Event
from stream.contract.types import Reason
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import Deltas
from stream.engine.fold import EVENT_FIELD_PREFIX, fold_records
from stream.engine.relay import (
    APPLIED,
    DUPLICATE,
    HEADER,
    HW_PREFIX,
    OUT_OF_ORDER,
    BadHeader,
    admit,
    collect,
    home_partition,
    hw_fields,
    hw_from_state,
    lane,
    parse_header,
)
from stream.engine.windows import Windows
from stream.metrics.score.touch import ScoreTouch
from tests.support.events import event

NOW = int(time.time() * 1000)


# ---- the sequence filter ------------------------------------------------------------------


def test_only_the_next_seq_of_a_lane_applies() -> None:
    hw: dict[str, int] = {}
    got = [admit(hw, "social.1", seq) for seq in (1, 2, 2, 4, 3, 1, 4, 5)]
    assert got == [
        APPLIED,
        APPLIED,
        DUPLICATE,
        OUT_OF_ORDER,  # 3 is missing: 4 comes again after it
        APPLIED,
        DUPLICATE,
        APPLIED,
        APPLIED,
    ]
    assert hw == {"social.1": 5}
    assert admit(hw, "account.1", 1) == APPLIED  # lanes are independent
    assert hw == {"social.1": 5, "account.1": 1}


def test_high_water_marks_round_trip_through_the_partition_state() -> None:
    before = {"social.1": 3, "support.0": 7}
    after = {"social.1": 5, "support.0": 7, "feedback.2": 1}
    fields = hw_fields(before, after)
    assert fields == {f"{HW_PREFIX}social.1": 5, f"{HW_PREFIX}feedback.2": 1}
    state: dict[str, Any] = {"offset": b"12", "max_ts": b"99", "churn": b"4"}
    state |= {f"{HW_PREFIX}support.0": b"7"} | {f: str(v).encode() for f, v in fields.items()}
    assert hw_from_state(state) == after


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, int, bool]]:
    """Steps of two publishers (an owner and a zombie, or the owner before and after a crash)
    draining one lane: start a pass, deliver its next record (or lose it), finish the pass."""
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["start", "send", "send", "send", "finish", "append"]),
                st.integers(0, 1),
                st.booleans() if draw(st.booleans()) else st.just(False),
            ),
            max_size=120,
        )
    )
    return steps


@settings(max_examples=400, deadline=None)
@given(schedules())
def test_publisher_protocol_applies_every_message_exactly_once(
    steps: list[tuple[str, int, bool]],
) -> None:
    """The argument in stream/engine/relay.py, as a model: publishers send runs from where the
    outbox starts (or after their own last acked pass), a send may be lost while later ones of
    the pass land (a gap), a pass trims only when every send of it was acked, and two publishers
    may interleave. The home side, applying only the next seq, applies seqs 1..k each once in
    order, never trims away a message it has not applied, and a last clean pass completes it."""
    outbox: list[int] = [1, 2, 3]  # seqs not trimmed yet
    appended = 3
    log: list[int] = []  # what reached the home partition, in order
    passes: dict[int, dict[str, Any]] = {}
    last: dict[int, int] = {}  # publisher -> last seq of its previous clean pass

    def applied_through(records: list[int]) -> int:
        hw: dict[str, int] = {}
        for seq in records:
            admit(hw, "social.0", seq)
        return hw.get("social.0", 0)

    for action, p, lose in steps:
        if action == "append":
            appended += 1
            outbox.append(appended)
        elif action == "start" and p not in passes:
            run = [s for s in outbox if s > last.get(p, 0)]
            passes[p] = {"run": run, "all": list(run), "lost": False}
        elif action == "send" and p in passes and passes[p]["run"]:
            seq = passes[p]["run"].pop(0)
            if lose:
                passes[p]["lost"] = True  # later sends of the pass may still land
            else:
                log.append(seq)
        elif action == "finish" and p in passes and not passes[p]["run"]:
            done = passes.pop(p)
            if done["lost"]:
                last.pop(p, None)  # send again from the outbox's head
            elif done["all"]:
                covered = done["all"][-1]
                # the trim never forgets a message the home side will not have applied
                assert applied_through(log) >= covered
                outbox[:] = [s for s in outbox if s > covered]  # XTRIM MINID
                last[p] = covered
    log += outbox  # a last clean pass of a fresh publisher (the zombie is gone)

    hw: dict[str, int] = {}
    applied = [seq for seq in log if admit(hw, "social.0", seq) == APPLIED]
    assert applied == list(range(1, appended + 1))


# ---- headers, envelope, lanes -------------------------------------------------------------


def test_relay_header_is_parsed_strictly() -> None:
    assert parse_header([]) is None
    assert parse_header([("traceparent", b"00-abc")]) is None
    assert parse_header([("traceparent", None), (HEADER, b"social.3:17")]) == ("social.3", 17)
    for bad in (
        b"",
        None,
        b"social.3",
        b"social.3:0",
        b"social.3:-1",
        b"social.03:1",
        b"teleport.3:1",
        b"social:1",
        b"social.x:1",
        b"social.3:1e3",
        "sociál.3:1".encode(),
        b"social.9999999:1",
    ):
        with pytest.raises(BadHeader):
            parse_header([(HEADER, bad)])


def test_home_partition_is_kafkas_default_partitioner() -> None:
    """Apps key clickstream by user id with the default partitioner; the relay must agree."""
    partitioner = DefaultPartitioner()
    for n in (1, 4, 12):
        for user in ("u1", "u000042", "ü-ñ", "x" * 200):
            want = partitioner(user.encode(), list(range(n)), list(range(n)))
            assert home_partition(user, n) == want


def _decoder() -> Any:
    return build_fold_context(Settings(_env_file=None), Windows(Settings().zone)).decoder  # type: ignore[call-arg]


def _touch_of(ev: Event) -> ScoreTouch:
    """The customer score's item of an event, as its fold handler makes it."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    (state,) = [k for k in build_keyed_states(settings) if k.name == "cus"]
    deltas = Deltas()
    state.handlers()[ev.type](ev, 0, deltas)
    ((touch,),) = deltas.keyed["cus"].values()
    assert isinstance(touch, ScoreTouch)
    return touch


def test_a_relayed_touch_decodes_to_the_same_touch_native_and_segment() -> None:
    decoder = _decoder()
    native = orjson.dumps(
        {
            **event(
                "ticket_replied", "u1", NOW - 5000, ticket_id="T1", author="agent", public=False
            ),
            "session_id": "s1",
            "account_id": "a1",
            "extra": {"ignored": True},
        }
    )
    segment = orjson.dumps(
        {
            "type": "track",
            "event": "Subscription Renewed",
            "messageId": "m-1",
            "userId": "u2",
            "anonymousId": "anon",
            "timestamp": "2026-01-05T10:00:00+01:00",
            "properties": {"plan": "pro", "amount": 12.5, "currency": "EUR"},
            "context": {"ip": "1.2.3.4"},
        }
    )
    survey = orjson.dumps(event("nps_response", "u3", NOW - 7000, score=0, channel="paid"))
    for raw in (native, segment, survey):
        ev = decoder.decode(raw, NOW)
        assert isinstance(ev, Event)
        touch = _touch_of(ev)
        again = decoder.decode(touch.relay_message().encode(), NOW)
        assert isinstance(again, Event)
        assert _touch_of(again) == touch
    relayed = orjson.loads(_touch_of(decoder.decode(segment, NOW)).relay_message())
    assert relayed["type"] == "subscription_renewed"
    assert relayed["event_id"] == "m-1" and relayed["user_id"] == "u2"


def test_collect_puts_each_customers_items_on_its_home_lane() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    (state,) = [k for k in build_keyed_states(settings) if k.name == "cus"]
    deltas = Deltas()
    decoder = _decoder()
    users = [f"u{i}" for i in range(20)]
    for u in users:
        for kind, props in (("like", {}), ("nps_response", {"score": 9})):
            ev = decoder.decode(orjson.dumps(event(kind, u, NOW - 1000, **props)), NOW)
            state.handlers()[kind](ev, 0, deltas)
    assert collect(deltas, "cus", 4) == 40
    assert "cus" not in deltas.keyed  # nothing left for a state the partition does not host
    seen = 0
    for p in range(4):
        for msg in deltas.outbox.get(lane(p), []):
            body = orjson.loads(msg)
            assert home_partition(body["user_id"], 4) == p
            seen += 1
    assert seen == 40


# ---- the fold's side path -----------------------------------------------------------------


class Rec:
    def __init__(self, offset: int, value: bytes, headers: list[tuple[str, bytes | None]]) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers = headers


def _relayed(offset: int, body: dict[str, Any], shard: str, seq: int) -> Rec:
    return Rec(offset, orjson.dumps(body), [(HEADER, f"{shard}:{seq}".encode())])


def test_fold_applies_relayed_records_once_to_customer_state_only() -> None:
    settings = Settings(_env_file=None, allowed_lateness_seconds=60)  # type: ignore[call-arg]
    ctx = build_fold_context(settings, Windows(settings.zone))
    t = NOW - 7_200_000
    view = event("page_view", "u1", t, page="/")
    like = event("like", "u1", t + 1000, platform="x")
    nps = event("nps_response", "u1", t + 2000, score=9)
    records = [
        Rec(0, orjson.dumps(view), [("traceparent", b"00-1")]),  # an app's header: ordinary
        _relayed(1, like, "social.2", 1),
        _relayed(2, like, "social.2", 1),  # re-send after a crash before the trim
        _relayed(3, {**like, "event_id": "x3"}, "social.2", 3),  # 2 is missing yet
        _relayed(4, {**like, "event_id": "x2"}, "social.2", 2),
        _relayed(5, {**like, "event_id": "x3"}, "social.2", 3),  # the re-sent run fills it
        _relayed(6, nps, "feedback.0", 1),
        # a relayed event carries the id of an event of this partition: not a duplicate here
        _relayed(7, {**like, "event_id": view["event_id"]}, "social.2", 4),
        # far in the future of the watermark: does not move it
        _relayed(8, event("like", "u2", t + 3_600_000, platform="x"), "social.2", 5),
        Rec(9, orjson.dumps(event("page_view", "u3", t + 30_000, page="/")), []),
        _relayed(10, event("like", "u4", t - 120_000, platform="x"), "social.1", 1),  # late
        Rec(11, b'{"type": "like"}', [(HEADER, b"social.2:x")]),  # malformed header
        _relayed(12, {"type": "like", "user_id": "u5"}, "social.1", 2),  # bad event
    ]
    result = fold_records(
        records, ctx, -1, NOW, window=PartitionWindow(100), relay_hw={"social.1": 0}
    )
    assert result is not None
    counters: dict[str, int] = {}
    for fields in result.deltas.counters.values():
        for f, n in fields.items():
            counters[f] = counters.get(f, 0) + n
    # relays count nowhere but in customer state
    assert counters == {f"{EVENT_FIELD_PREFIX}page_view": 2, "pv": 2, "pv|%2F": 2}
    assert not result.deltas.hashes and not result.deltas.totals
    assert {name for _, name in result.deltas.users} == {"active"}
    assert set().union(*result.deltas.users.values()) == {"u1", "u3"}
    assert result.accepted == 2
    assert result.max_ts == t + 30_000  # the relayed like at t + 1 h did not move it
    items = result.deltas.keyed["cus"]
    assert [(e.type, e.event_id) for e in items["u1"]] == [
        ("page_view", view["event_id"]),
        ("like", like["event_id"]),
        ("like", "x2"),
        ("like", "x3"),
        ("nps_response", nps["event_id"]),
        ("like", view["event_id"]),
    ]
    assert [e.type for e in items["u2"]] == ["like"]
    assert "u4" not in items and "u5" not in items
    assert result.relay_hw == {"social.2": 5, "feedback.0": 1, "social.1": 2}
    assert result.relayed == {APPLIED: 6, DUPLICATE: 1, OUT_OF_ORDER: 1, "rejected": 2}
    rejected = [(r.offset, r.reason) for r in result.rejected]
    assert rejected == [(10, Reason.LATE), (11, Reason.SCHEMA), (12, Reason.MISSING_EVENT_ID)]
    assert result.rejected[0].detail.startswith("relayed from social.1 (#1, score only)")
    # the session fold saw the page views only
    assert set(result.deltas.keyed["ses"]) == {("u1", "s-u1"), ("u3", "s-u3")}


def test_warm_up_and_other_partitions_leave_relayed_records_alone() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    ctx = build_fold_context(settings, Windows(settings.zone))
    view = event("page_view", "u1", NOW - 60_000, page="/")
    records = [
        _relayed(0, view, "social.0", 1),  # already applied before: warm-up only
        Rec(1, orjson.dumps(view), []),  # the same id, not relayed: not a duplicate of it
    ]
    result = fold_records(
        records, ctx, -1, NOW, window=PartitionWindow(100), warm_until=0, relay_hw={}
    )
    assert result is not None and result.accepted == 1 and not result.rejected
    # a partition that does not accept relays folds such a record as an ordinary event
    plain = fold_records(records[:1], ctx, -1, NOW)
    assert plain is not None and plain.accepted == 1 and plain.relay_hw is None


async def test_publisher_survives_an_unreachable_redis() -> None:
    """A pass that cannot reach Redis publishes nothing and raises nothing: the task must live
    on through an outage (the worker's e2e outage test depends on it)."""
    from stream.engine import store
    from stream.engine.keys import Keys
    from stream.engine.relay import RelayPublisher
    from stream.engine.worker_metrics import WorkerMetrics
    from stream.infra.localstack import free_port

    client = store.connect(f"redis://127.0.0.1:{free_port()}/0")
    metrics = WorkerMetrics()
    publisher = RelayPublisher(
        client,
        Keys("t"),
        "relay",
        "clicks",
        "127.0.0.1:1",
        lambda: [("social.0", 0), ("social.0", 1)],
        metrics.relay_published,
        backlog=metrics.relay_backlog,
    )
    assert await publisher.drain_once() == 0
    await client.aclose()
