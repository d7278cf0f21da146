"""The health score's support part: settled on the watermark like the ticket metrics, so it
equals the batch reference (tests/support/score_reference.py) whatever the arrival order and
batch cuts; private notes are not replies; an agent's own ticket waits for its second public
agent reply."""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import score_rules
from stream.metrics.score.codec import pack, unpack
from stream.metrics.score.evaluation import ActivityHit, Customer, advance
from stream.metrics.score.rules import ScoreRules
from tests.support.score_reference import reference_health

MIN = 60_000
T0 = 1_767_225_600_000
LATENESS = 20 * MIN
TARGET = 10 * MIN


def support_rules() -> ScoreRules:
    return dataclasses.replace(
        score_rules(Settings()), health_weights=(0, 0, 100), reply_target_ms=TARGET
    )


def hit(e: dict[str, Any]) -> ActivityHit:
    p = e["properties"]
    return ActivityHit(
        e["ts"], e["type"], "organic", p.get("ticket_id", ""), -1, p.get("author", ""),
        p.get("public", True) is not False,
    )  # fmt: skip


def run(
    arrival: list[dict[str, Any]], cuts: list[int], repack: bool = True
) -> tuple[Customer, int, list[dict[str, Any]]]:
    """Feed batches to ``advance`` at the watermark each reaches (late events dropped, as the
    fold does); the state goes through the codec between batches, as through Redis."""
    rules = support_rules()
    c = Customer("u1")
    max_ts, on_time = -1, []
    bounds = [0, *sorted(set(cuts)), len(arrival)]
    for lo, hi in itertools.pairwise(bounds):
        batch = []
        for e in arrival[lo:hi]:
            if e["ts"] < max_ts - LATENESS:
                continue
            max_ts = max(max_ts, e["ts"])
            on_time.append(e)
            batch.append(hit(e))
        if max_ts < 0:
            continue
        advance(c, sorted(batch), max_ts - LATENESS, rules)
        if repack:
            c = unpack(pack(c), len(rules.activities))
    return c, max_ts - LATENESS, on_time


def ticket_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["ticket_created", "ticket_replied", "ticket_replied", "ticket_solved",
             "ticket_reopened", "ticket_closed"]
        )
    )  # fmt: skip
    props: dict[str, Any] = {"ticket_id": draw(st.sampled_from(["t1", "t2", "t3"]))}
    if kind == "ticket_created":
        props["author"] = draw(st.sampled_from(["agent", "requester"]))
    if kind == "ticket_replied":
        props["author"] = draw(st.sampled_from(["agent", "agent", "bot", "requester"]))
        if draw(st.booleans()):
            props["public"] = draw(st.booleans())
    return {"type": kind, "ts": T0 + draw(st.integers(0, 60)) * MIN, "properties": props}


@st.composite
def lifecycles(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    events = [ticket_event(draw) for _ in range(draw(st.integers(1, 14)))]
    # a clock far ahead at the end settles everything
    events.append({"type": "page_view", "ts": T0 + 10 * 60 * MIN, "properties": {}})
    rng = random.Random(draw(st.integers(0, 2**32)))
    arrival = sorted(events[:-1], key=lambda e: e["ts"] + rng.randint(0, 30 * MIN))
    cuts = draw(st.lists(st.integers(0, len(arrival)), max_size=5))
    return [*arrival, events[-1]], cuts


@settings(max_examples=300, deadline=None)
@given(lifecycles())
def test_support_part_equals_the_batch_replay_whatever_the_arrival_order(
    case: tuple[list[dict[str, Any]], list[int]],
) -> None:
    c, watermark, on_time = run(*case)
    want = reference_health(on_time, 0, (0, 0, 100), TARGET, watermark=watermark)
    assert c.health_at(0, support_rules()) == want


@settings(max_examples=100, deadline=None)
@given(lifecycles())
def test_events_the_watermark_has_not_passed_wait(
    case: tuple[list[dict[str, Any]], list[int]],
) -> None:
    arrival, cuts = case
    c, watermark, on_time = run(arrival[:-1], cuts)  # no clock: some events are still ahead
    want = reference_health(on_time, 0, (0, 0, 100), TARGET, watermark=watermark)
    assert c.health_at(0, support_rules()) == want
    assert all(h.ts >= watermark for h in c.support_pending)


def _health(events: list[dict[str, Any]], cuts: list[int]) -> int:
    clock = {"type": "page_view", "ts": T0 + 10 * 60 * MIN, "properties": {}}
    c, _, _ = run([*events, clock], cuts)
    return c.health_at(0, support_rules())


def test_a_solve_that_arrives_before_its_creation_closes_the_ticket() -> None:
    created = {"type": "ticket_created", "ts": T0, "properties": {"ticket_id": "t1"}}
    solved = {"type": "ticket_solved", "ts": T0 + 5 * MIN, "properties": {"ticket_id": "t1"}}
    assert _health([solved, created], [1]) == 100 == _health([created, solved], [1])


def test_a_private_note_is_not_the_first_reply() -> None:
    def reply(ts: int, **props: Any) -> dict[str, Any]:
        return {"type": "ticket_replied", "ts": ts, "properties": {"ticket_id": "t1", **props}}

    created = {"type": "ticket_created", "ts": T0, "properties": {"ticket_id": "t1"}}
    note = reply(T0 + MIN, author="agent", public=False)
    answer = reply(T0 + 30 * MIN, author="agent")  # 30 min on a 10 min target: full penalty
    assert _health([created, note, answer], []) == 100 - 20 - 40


def test_an_agent_created_ticket_is_first_replied_by_the_second_public_agent_reply() -> None:
    created = {"type": "ticket_created", "ts": T0, "properties": {"ticket_id": "t1",
                                                                   "author": "agent"}}  # fmt: skip
    opening = {"type": "ticket_replied", "ts": T0,
               "properties": {"ticket_id": "t1", "author": "agent"}}  # fmt: skip
    answer = {"type": "ticket_replied", "ts": T0 + 20 * MIN,
              "properties": {"ticket_id": "t1", "author": "agent"}}  # fmt: skip
    # 20 min on a 10 min target: half the penalty (40 × 10 / 20); the opening comment is not it
    assert _health([created, opening, answer], []) == 100 - 20 - 20


def test_values_stored_before_ticket_lifecycles_still_load() -> None:
    rules = support_rules()
    c = Customer("u1")
    advance(c, [], T0, rules)
    old = pack(c).replace("{},-1,false", '{"t1":1767225600000,"t2":-1},-1,true')
    loaded = unpack(old, len(rules.activities))
    assert loaded.open_tickets == 2 and loaded.had_support
