"""Ticket lifecycle math without Kafka or Redis: Zendesk edge cases, and stream == batch.

The property test feeds random lifecycles (bot/requester/agent replies, agent-created tickets,
reopens, tickets whose creation the stream never sees) in random arrival orders and batch cuts
through the real handlers and ``TicketState.settle`` (tests/support/keyed_driver.py) and
compares every counter, duration-histogram entry and the backlog with the plain replay of
tests/support/families_reference.py, which shares no code with it — also with a business-hours
schedule, whose times the reference counts minute by minute.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stream.engine.keys import escape
from stream.engine.windows import Windows
from stream.metrics.business_hours import BusinessHours
from stream.metrics.catalog import CATALOG
from stream.metrics.labels import BoundedLabels
from stream.metrics.reader import QueryError, Reader
from stream.metrics.spec import MetricOptions, Query, evaluate
from stream.metrics.support import (
    BACKLOG,
    CREATED,
    DURATION_HASH,
    REOPENED,
    SOLVED,
    Ticket,
    TicketEvent,
    TicketState,
    apply_event,
)
from tests.support.bucket_reference import field_suffix
from tests.support.business_reference import BruteBusinessHours
from tests.support.events import event
from tests.support.families_reference import TicketFact, partition_watermarks, replay_ticket
from tests.support.keyed_driver import Outcome, run_keyed
from tests.support.reference import FAMILY, partition_of

MIN = 60_000
HOUR = 60 * MIN
LATENESS = 30 * MIN
PARTITIONS = 2
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z; test times are offsets from it
CHANNELS = frozenset({"email", "chat"})
PRIORITIES = frozenset({"low", "high"})


def state(business_hours: BusinessHours | None = None) -> TicketState:
    return TicketState(
        BoundedLabels(CHANNELS), BoundedLabels(PRIORITIES), business_hours=business_hours
    )


def run(
    events: list[dict[str, Any]],
    cuts: list[int] | None = None,
    business_hours: BusinessHours | None = None,
) -> Outcome:
    s = state(business_hours)
    return run_keyed(
        s, s.handlers(), events, cuts or [], partitions=PARTITIONS, lateness_ms=LATENESS
    )


def tix(kind: str, ts: int, ticket: str = "T1", user: str = "ann", **props: Any) -> dict[str, Any]:
    return event("ticket_" + kind, user, T0 + ts, ticket_id=ticket, **props)


def reply(ts: int, author: str, **props: Any) -> dict[str, Any]:
    return tix("replied", ts, author=author, **props)


def flush(ts: int) -> dict[str, Any]:
    """An unrelated ticket's event far later: moves the watermark past everything before."""
    return tix("created", ts, ticket="flush")


def durations(out: Outcome, measure: str) -> list[str]:
    """Duration buckets (field suffixes) of every settled (net) duration of ``measure``, all
    channels."""
    prefix = measure + "|all|"
    found: list[str] = []
    for (_, name, f), n in out.hashes.items():
        if name == DURATION_HASH and f.startswith(prefix):
            found += [f[len(prefix) :]] * n
    return sorted(found, key=lambda suffix: int(suffix[1:]))


def buckets(*seconds: int) -> list[str]:
    """The field suffixes of these whole-second durations (the test reference's buckets)."""
    return [field_suffix(s) for s in sorted(seconds)]


def count(out: Outcome, field_name: str) -> int:
    return sum(v for (_, f), v in out.counters.items() if f == field_name)


def test_first_reply_skips_bots_requesters_and_private_notes() -> None:
    out = run(
        [
            tix("created", 0, channel="email", priority="high"),
            reply(1 * MIN, "bot"),
            reply(2 * MIN, "requester"),
            reply(3 * MIN, "agent", public=False),
            reply(10 * MIN, "agent"),
            reply(20 * MIN, "agent"),
            flush(10 * HOUR),
        ]
    )
    assert durations(out, "frt") == buckets(600)
    assert count(out, "tix.frt.ms") == 10 * MIN  # exact: the buckets are for the median only
    assert count(out, "tix.frt.n|channel|email") == 1
    assert count(out, "tix.frt.n|priority|high") == 1


def test_agent_created_ticket_uses_the_second_public_agent_reply() -> None:
    out = run(
        [
            tix("created", 0, author="agent"),
            reply(5 * MIN, "agent"),
            reply(9 * MIN, "bot"),
            reply(30 * MIN, "agent"),
            flush(10 * HOUR),
        ]
    )
    assert durations(out, "frt") == buckets(1800)


def test_reopen_moves_full_resolution_and_keeps_first() -> None:
    out = run(
        [
            tix("created", 0),
            tix("solved", 1 * HOUR),
            tix("reopened", 2 * HOUR),
            tix("solved", 5 * HOUR),
            flush(20 * HOUR),
        ]
    )
    assert durations(out, "fres") == buckets(3600)
    assert durations(out, "full") == buckets(5 * 3600)  # the 1 h value was taken back out
    assert count(out, "tix.solved") == 2 and count(out, "tix.reopens") == 1
    assert count(out, "tix.full.n") == 1 and count(out, "tix.full.ms") == 5 * HOUR
    # the reopen counts when it happens (Zendesk), not at the re-solve
    assert reopened_at(out) == [2 * HOUR]


def reopened_at(out: Outcome) -> list[int]:
    """Event times (ms after T0, to the minute) of the counted reopens."""
    return sorted(
        m * 1000 - T0 for (m, f), n in out.counters.items() if f == "tix.reopens" for _ in range(n)
    )


def test_a_solve_of_a_solved_ticket_is_an_implicit_reopen_and_moves_full_resolution() -> None:
    out = run(
        [
            tix("created", 0),
            tix("solved", 1 * HOUR),
            tix("solved", 3 * HOUR),  # a requester replied and the helpdesk reopened it
            tix("closed", 4 * HOUR),
            tix("solved", 5 * HOUR),  # closed is final
            flush(20 * HOUR),
        ]
    )
    assert count(out, "tix.solved") == 2 and reopened_at(out) == [3 * HOUR]
    assert durations(out, "fres") == buckets(3600)
    assert durations(out, "full") == buckets(3 * 3600)


def test_reply_before_its_ticket_created_still_counts_once_both_arrived() -> None:
    events = [
        reply(10 * MIN, "agent"),  # in a batch of its own, before the ticket exists
        tix("created", 0, channel="chat"),
        tix("solved", 40 * MIN),
        flush(10 * HOUR),
    ]
    out = run(events, cuts=[1, 2, 3])
    assert durations(out, "frt") == buckets(600)
    assert durations(out, "fres") == buckets(2400)
    assert count(out, "tix.new|channel|chat") == 1


def solved_before_created() -> list[dict[str, Any]]:
    """Hypothesis' falsifying lifecycle: solves stamped before the ticket's creation."""
    return [
        tix("reopened", 0, "T0"),
        tix("replied", 0, "T0", author="agent", public=True),
        tix("replied", 0, "T0", author="agent", public=True),
        tix("solved", 0, "T0"),
        tix("solved", 5 * MIN, "T0"),
        tix("created", 5 * MIN, "T0", channel="email", priority="low"),
        tix("replied", 35 * MIN + 1, "T0", author="agent", public=True),
    ]


def test_a_solve_before_the_creation_counts_but_has_no_resolution_time() -> None:
    # In event time: solve at 0 (before the creation: counted under (not set), no time), reopen
    # (same ms, applied after the solve), created at 5 min, re-solve at 5 min (applied after the
    # creation). The re-solve is the first solve with a time: full = 0 s in its window and
    # nothing taken out of the 0-min window, which never had a full resolution time.
    out = run(solved_before_created())
    assert count(out, "tix.solved") == 2 and count(out, "tix.reopens") == 1
    assert count(out, "tix.solved|channel|" + escape("(not set)")) == 1
    assert count(out, "tix.solved|channel|email") == 1
    assert durations(out, "fres") == []  # the first solve preceded the creation: undefined
    assert durations(out, "full") == buckets(0)
    full = {k: v for k, v in out.counters.items() if k[1].startswith("tix.full.n") and v}
    minute = (T0 + 5 * MIN) // 1000
    assert full == {
        (minute, "tix.full.n"): 1,
        (minute, "tix.full.n|channel|email"): 1,
        (minute, "tix.full.n|priority|low"): 1,
    }
    assert not any(v for k, v in out.counters.items() if k[1].startswith("tix.full.ms"))
    counters, _, _ = batch(out.on_time)
    assert net(out.counters) == net(counters)


def test_duplicate_creations_in_one_millisecond_do_not_depend_on_arrival() -> None:
    email = tix("created", 0, channel="email", priority="low")
    chat = tix("created", 0, channel="chat", priority="high")
    for first, second in ((email, chat), (chat, email)):
        out = run([first, second, tix("solved", MIN), flush(10 * HOUR)])
        assert count(out, "tix.new") == 1
        assert count(out, "tix.new|channel|chat") == 1  # "chat" < "email"
        assert count(out, "tix.solved|priority|high") == 1
        counters, _, _ = batch(out.on_time)
        assert net(out.counters) == net(counters)


def test_facts_wait_for_the_watermark() -> None:
    out = run([tix("created", 0), reply(10 * MIN, "agent"), tix("solved", 20 * MIN)])
    # max ts 20 min − 30 min lateness: nothing is settled yet, but the backlog is live
    assert not out.counters
    assert out.totals[(BACKLOG, "all")] == 0  # solved: not open
    out = run([tix("created", 0), reply(10 * MIN, "agent")])
    assert out.totals[(BACKLOG, "all")] == 1
    assert out.totals[(BACKLOG, "channel|" + escape("(not set)"))] == 1


def test_closed_ticket_state_is_forgotten_after_the_ttl() -> None:
    out = run(
        [tix("created", 0), tix("solved", HOUR), tix("closed", 2 * HOUR), flush(40 * 24 * HOUR)]
    )
    p = partition_of("ann", PARTITIONS)
    assert len(out.stored[p]) == 1  # only the flush ticket is left


# ---- stream == batch under any arrival order ----------------------------------------------


def expected_fields(facts: list[TicketFact]) -> tuple[Counter[tuple[int, str]], Counter[str]]:
    """The documented counter and histogram fields of the reference's facts."""
    counters: Counter[tuple[int, str]] = Counter()
    hist: Counter[str] = Counter()
    for f in facts:
        minute = f.ts // MIN * 60
        c, p = escape(f.channel), escape(f.priority)
        suffixes = ["", f"|channel|{c}", f"|priority|{p}"]
        if f.duration_ms is None:
            for s in suffixes:
                counters[(minute, f"tix.{f.measure}{s}")] += 1
            continue
        for s in suffixes:
            counters[(minute, f"tix.{f.measure}.n{s}")] += 1
            counters[(minute, f"tix.{f.measure}.ms{s}")] += f.duration_ms
        bucket = field_suffix(f.duration_ms // 1000)
        for slice_ in ("all", f"channel|{c}", f"priority|{p}"):
            hist[f"{f.measure}|{slice_}|{bucket}"] += 1
    return counters, hist


def batch(
    on_time: list[dict[str, Any]], business: Callable[[int, int], int] | None = None
) -> tuple[Counter[tuple[int, str]], Counter[str], Counter[str]]:
    marks = partition_watermarks(on_time, FAMILY, lambda u: partition_of(u, PARTITIONS), LATENESS)
    by_ticket: dict[str, list[dict[str, Any]]] = {}
    for e in on_time:
        by_ticket.setdefault(e["properties"]["ticket_id"], []).append(e)
    facts: list[TicketFact] = []
    backlog: Counter[str] = Counter()
    for evs in by_ticket.values():
        wm = marks[("support", partition_of(evs[0]["user_id"], PARTITIONS))]
        got, open_labels = replay_ticket(evs, wm, CHANNELS, PRIORITIES, business)
        facts += got
        if open_labels is not None:
            backlog["all"] += 1
            backlog["channel|" + escape(open_labels[0])] += 1
            backlog["priority|" + escape(open_labels[1])] += 1
    counters, hist = expected_fields(facts)
    return counters, hist, backlog


def net(counter: Counter[Any]) -> Counter[Any]:
    return Counter({k: v for k, v in counter.items() if v})


@st.composite
def lifecycles(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    events: list[dict[str, Any]] = []
    grid = st.integers(0, 8 * 12).map(lambda i: i * 5 * MIN)
    for n in range(draw(st.integers(1, 4))):
        ticket, user = f"T{n}", draw(st.sampled_from(["ann", "bob", "cyd"]))
        if draw(st.booleans()) or n == 0:
            props = {
                "channel": draw(st.sampled_from(["email", "chat", "fax", None])),
                "priority": draw(st.sampled_from(["low", "high", None])),
            }
            if draw(st.booleans()):
                props["author"] = "agent"
            props = {k: v for k, v in props.items() if v is not None}
            created = tix("created", draw(grid), ticket, user, **props)
            events.append(created)
            if draw(st.integers(0, 4)) == 0:  # a duplicate creation, often in the same ms
                again = draw(st.sampled_from([created["ts"] - T0, draw(grid)]))
                labels = {"channel": draw(st.sampled_from(["email", "chat", "fax"]))}
                events.append(tix("created", again, ticket, user, **labels))
        for _ in range(draw(st.integers(0, 7))):
            kind = draw(st.sampled_from(["replied", "replied", "solved", "reopened", "closed"]))
            props = {}
            if kind == "replied":
                props["author"] = draw(st.sampled_from(["agent", "agent", "bot", "requester"]))
                public = draw(st.sampled_from([True, False, None]))
                if public is not None:
                    props["public"] = public
            ts = draw(grid) + draw(st.sampled_from([0, 1, 59_999]))
            events.append(tix(kind, ts, ticket, user, **props))
    events.sort(key=lambda e: e["ts"])
    rng = random.Random(draw(st.integers(0, 2**32)))
    # displaced by up to 45 min: mostly within the 30-min lateness, some late (dropped)
    arrival = sorted(events, key=lambda e: e["ts"] + rng.randint(0, 45 * MIN))
    if draw(st.booleans()):
        arrival.append(flush(2 * 24 * HOUR))  # settle everything
    cuts = draw(st.lists(st.integers(0, len(arrival)), max_size=6))
    return arrival, cuts


@given(lifecycles())
@example((solved_before_created(), []))
def test_stream_tickets_equal_batch_replay(case: tuple[list[dict[str, Any]], list[int]]) -> None:
    events, cuts = case
    out = run(events, cuts)
    counters, hist, backlog = batch(out.on_time)
    assert net(out.counters) == net(counters)
    stream_hist: Counter[str] = Counter()
    for (_, name, f), v in out.hashes.items():
        if name == DURATION_HASH:
            stream_hist[f] += v
    assert net(stream_hist) == net(hist)
    assert net(Counter({f: v for (name, f), v in out.totals.items() if name == BACKLOG})) == net(
        backlog
    )


def test_property_harness_sees_every_fact() -> None:
    """Guard against a vacuous property: a fixed lifecycle yields every kind of fact."""
    events = [
        tix("created", 0, channel="email"),
        reply(MIN, "agent"),
        tix("solved", HOUR),
        tix("reopened", 2 * HOUR),
        tix("solved", 3 * HOUR),
        tix("created", 3 * HOUR, ticket="open-one"),
        flush(2 * 24 * HOUR),
    ]
    out = run(events, [3])
    counters, _, backlog = batch(out.on_time)
    assert {f.split("|")[0] for _, f in counters} >= {
        "tix.new", "tix.solved", "tix.reopens", "tix.frt.n", "tix.fres.n", "tix.full.n"
    }  # fmt: skip
    assert backlog["all"] == 2 and net(out.counters) == net(counters)


# ---- business hours ------------------------------------------------------------------------
NEW_YORK = "America/New_York"
WEEKDAYS_9_17 = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def new_york(local: str) -> int:
    """Offset from T0 of a New York wall-clock time (T0 is 2025-12-31 19:00 there)."""
    wall = date.fromisoformat(local[:10])
    hour, minute = (int(x) for x in local[11:].split(":"))
    instant = datetime(wall.year, wall.month, wall.day, hour, minute, tzinfo=ZoneInfo(NEW_YORK))
    return int(instant.timestamp() * 1000) - T0


def test_business_times_are_recorded_next_to_calendar_times() -> None:
    hours = BusinessHours.build(WEEKDAYS_9_17, NEW_YORK)
    created = new_york("2026-01-02T16:00")  # a Friday
    events = [
        tix("created", created, channel="email"),
        reply(new_york("2026-01-05T10:00"), "agent"),  # Monday: 66 h, 2 business hours
        tix("solved", new_york("2026-01-05T12:30")),
        flush(new_york("2026-01-08T00:00")),
    ]
    out = run(events, business_hours=hours)
    assert durations(out, "frt") == buckets(66 * 3600)
    assert durations(out, "frt_bh") == buckets(2 * 3600)
    assert durations(out, "fres_bh") == durations(out, "full_bh") == buckets(int(4.5 * 3600))
    assert count(out, "tix.frt_bh.n|channel|email") == 1
    assert count(out, "tix.frt_bh.ms") == 2 * HOUR
    # Without a schedule nothing of it is recorded; with a holiday on the Friday, 1 h is left.
    assert not any("_bh" in f for _, f in run(events).counters)
    holiday = BusinessHours.build(WEEKDAYS_9_17, NEW_YORK, [date(2026, 1, 2)])
    assert durations(run(events, business_hours=holiday), "frt_bh") == buckets(3600)


def test_a_re_solve_moves_the_business_full_resolution_too() -> None:
    hours = BusinessHours.build(WEEKDAYS_9_17, NEW_YORK)
    out = run(
        [
            tix("created", new_york("2026-01-05T09:00")),
            tix("solved", new_york("2026-01-05T10:00")),
            tix("reopened", new_york("2026-01-05T20:00")),
            tix("solved", new_york("2026-01-06T10:00")),
            flush(new_york("2026-01-09T00:00")),
        ],
        business_hours=hours,
    )
    assert durations(out, "fres_bh") == buckets(3600)
    assert durations(out, "full_bh") == buckets(9 * 3600)  # Monday 8 h + Tuesday 1 h
    assert count(out, "tix.full_bh.n") == 1 and count(out, "tix.full_bh.ms") == 9 * HOUR


def test_switching_business_hours_on_takes_back_only_what_was_recorded() -> None:
    business = BusinessHours.build({"mon": ["00:00-24:00"]}, "UTC").business_ms
    t = Ticket()
    facts: list[Any] = []
    monday = 1_767_571_200_000  # 2026-01-05T00:00Z
    apply_event(t, TicketEvent(monday, CREATED), facts)
    apply_event(t, TicketEvent(monday + HOUR, SOLVED), facts)  # recorded while the mode was off
    assert t.full_business is None
    apply_event(t, TicketEvent(monday + 2 * HOUR, REOPENED), facts)
    facts.clear()
    apply_event(t, TicketEvent(monday + 3 * HOUR, SOLVED), facts, business)
    moved = [(f.measure, f.n, f.duration_ms) for f in facts if "full" in f.measure]
    assert moved == [("full", -1, HOUR), ("full", 1, 3 * HOUR), ("full_bh", 1, 3 * HOUR)]
    assert t.full_business == 3 * HOUR
    # Off again: the business value recorded is taken back, none is added.
    apply_event(t, TicketEvent(monday + 4 * HOUR, REOPENED), facts)
    facts.clear()
    apply_event(t, TicketEvent(monday + 5 * HOUR, SOLVED), facts)
    moved = [(f.measure, f.n, f.duration_ms) for f in facts if "full" in f.measure]
    assert moved == [("full", -1, 3 * HOUR), ("full_bh", -1, 3 * HOUR), ("full", 1, 5 * HOUR)]


def test_ticket_state_stored_before_business_hours_still_decodes() -> None:
    old = msgspec.json.encode(Ticket(created=5, full_solve=9))
    fields = msgspec.json.decode(old)
    assert fields[-1] is None  # full_business, the newest field, is last
    ticket = msgspec.json.decode(msgspec.json.encode(fields[:-1]), type=Ticket)
    assert ticket.created == 5 and ticket.full_solve == 9 and ticket.full_business is None


def test_business_metrics_are_an_error_when_the_mode_is_off() -> None:
    query = Query("hour", [0], {}, Windows(ZoneInfo("UTC")), MetricOptions())
    reader = cast(Reader, None)  # refused before anything is read
    with pytest.raises(QueryError, match=r"support_business_hours\.enabled"):
        asyncio.run(evaluate(CATALOG["first_reply_time_business_median"], query, reader))


BUSINESS_SCHEDULES = [
    # T0 is Wednesday 19:00 in New York; the lifecycles run until Thursday 03:00 there.
    ({"wed": ["18:00-20:30", "21:00-24:00"], "thu": ["00:00-00:45", "01:30-02:10"]}, []),
    ({"wed": ["19:05-23:55"], "thu": ["00:00-24:00"]}, [date(2026, 1, 1)]),
    (WEEKDAYS_9_17, []),  # closed all night: every business time is 0
]


@given(lifecycles(), st.sampled_from(BUSINESS_SCHEDULES))
def test_stream_business_times_equal_batch_replay(
    case: tuple[list[dict[str, Any]], list[int]],
    schedule: tuple[dict[str, list[str]], list[date]],
) -> None:
    events, cuts = case
    days, holidays = schedule
    out = run(events, cuts, BusinessHours.build(days, NEW_YORK, holidays))
    brute = BruteBusinessHours.of(days, NEW_YORK, holidays)
    counters, hist, _ = batch(out.on_time, brute.business_ms)
    assert net(out.counters) == net(counters)
    stream_hist: Counter[str] = Counter()
    for (_, name, f), v in out.hashes.items():
        if name == DURATION_HASH:
            stream_hist[f] += v  # summed over the minutes
    assert net(stream_hist) == net(hist)


def test_business_property_sees_business_time() -> None:
    """Guard against a vacuous property: the first schedule gives non-zero business times."""
    days, holidays = BUSINESS_SCHEDULES[0]
    events = [
        tix("created", 0, channel="email"),
        reply(2 * HOUR, "agent"),
        tix("solved", 6 * HOUR),
        tix("reopened", 6 * HOUR + MIN),
        tix("solved", 7 * HOUR),
        flush(2 * 24 * HOUR),
    ]
    out = run(events, [2], BusinessHours.build(days, NEW_YORK, holidays))
    counters, _, _ = batch(out.on_time, BruteBusinessHours.of(days, NEW_YORK).business_ms)
    got = {f: v for (_, f), v in net(counters).items() if f.endswith(".ms")}
    assert got["tix.frt_bh.ms"] == 90 * MIN  # 19:00–20:30, then 21:00 on
    assert 0 < got["tix.full_bh.ms"] < got["tix.full.ms"]
    assert net(out.counters) == net(counters)
