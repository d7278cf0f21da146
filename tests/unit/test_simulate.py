"""The simulator: deterministic, ordered, realistic enough to exercise every metric."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict

from stream.contract.decode import Decoder, Event
from stream.contract.types import EventType
from stream.tools.simulate import SimulationConfig, Simulator, session_gap_floor, take

CFG = SimulationConfig(seed=3, users=120, fade_seconds=20 * 86400)
EVENTS = take(Simulator(CFG).events(), 120_000)


def test_deterministic_and_ordered_but_for_delayed_ticket_creations() -> None:
    again = take(Simulator(CFG).events(), 5_000)
    assert [e.event for e in again] == [e.event for e in EVENTS[:5_000]]
    in_order = [e for e in EVENTS if e.event["type"] != "ticket_created"]
    assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(in_order))
    latest = 0
    for e in EVENTS:
        assert e.ts_ms >= latest - 10_000  # at most seconds out of order
        latest = max(latest, e.ts_ms)
    assert len({e.event["event_id"] for e in EVENTS}) == len(EVENTS)


def test_ticket_lifecycles_are_realistic() -> None:
    """Bot, agent and requester replies, agent-created tickets, reopens, closes, and some
    creations delivered after their bot reply — everything the ticket metrics must handle."""
    seen: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in EVENTS:
        if e.event["type"].startswith("ticket_"):
            seen[str(e.event["properties"]["ticket_id"])].append(e.event)
    assert len(seen) > 50
    authors = Counter(
        e["properties"]["author"] for evs in seen.values() for e in evs  # type: ignore[index]
        if e["type"] == "ticket_replied"
    )  # fmt: skip
    assert authors["bot"] and authors["agent"] and authors["requester"]
    types = Counter(e["type"] for evs in seen.values() for e in evs)
    assert types["ticket_reopened"] and types["ticket_closed"]
    by_agent = [evs for evs in seen.values()
                if evs[0]["type"] == "ticket_created" and evs[0]["properties"].get("author")]  # type: ignore[attr-defined]  # fmt: skip
    assert by_agent
    delayed = [evs for evs in seen.values() if evs[0]["type"] == "ticket_replied"]
    assert delayed and all(
        evs[1]["type"] == "ticket_created" and evs[1]["ts"] <= evs[0]["ts"]  # type: ignore[operator]
        for evs in delayed
    )


def test_every_type_appears_and_decodes() -> None:
    types = Counter(e.event["type"] for e in EVENTS)
    missing = {t.value for t in EventType if t != EventType.IDENTIFY} - set(types)
    assert not missing, missing
    decoder = Decoder(max_message_bytes=65536, max_future_skew_ms=0, segment_event_map={})
    for e in EVENTS[::50]:
        assert isinstance(decoder.decode(json.dumps(e.event).encode(), 10**13), Event)


def test_sessions_have_no_internal_gap_of_30_minutes() -> None:
    last: dict[str, int] = {}
    for e in EVENTS:
        sid = e.event.get("session_id")
        if sid is None:
            continue
        if sid in last:
            assert e.ts_ms - last[sid] < 30 * 60_000
        last[sid] = e.ts_ms
    starts: dict[str, list[int]] = defaultdict(list)
    for e in EVENTS:
        if "session_id" in e.event:
            starts[e.event["user_id"]].append(e.ts_ms)
    assert len(last) > 1000


def test_fading_cohort_fades_and_others_do_not() -> None:
    sim = Simulator(CFG)
    fading = sim.fading_users()
    assert 0 < len(fading) < CFG.users
    span = CFG.fade_seconds * 1000
    quarter = span / 4

    def rate(users_fading: bool, lo: float, hi: float) -> int:
        return sum(
            1
            for e in EVENTS
            if (e.event["user_id"] in fading) == users_fading
            and CFG.start_ms + lo <= e.ts_ms < CFG.start_ms + hi
        )

    if EVENTS[-1].ts_ms < CFG.start_ms + span:
        return  # stream too short for this config
    early, late = rate(True, 0, quarter), rate(True, 3 * quarter, span)
    assert late < 0.1 * early + 5
    other_early, other_late = rate(False, quarter, 2 * quarter), rate(False, 3 * quarter, span)
    assert 0.7 * other_early <= other_late <= 1.3 * other_early


def test_clicks_mostly_follow_an_impression_and_some_are_orphans() -> None:
    seen: set[tuple[str, str, str]] = set()
    with_imp = orphans = 0
    for e in EVENTS:
        p = e.event["properties"]
        key = (e.event["user_id"], p.get("campaign", ""), p.get("placement", ""))
        if e.event["type"] == "impression":
            seen.add(key)
        elif e.event["type"] == "click":
            if key in seen:
                with_imp += 1
            else:
                orphans += 1
    assert with_imp > orphans > 0


def test_active_crowd_starts_at_once() -> None:
    """The live demo (activity 600) must have traffic from its first minute: first sessions come
    `activity` times sooner, not spread over the same 6 hours as at activity 1."""
    start = 1_795_000_000_000

    def first_two_minutes(activity: float) -> int:
        sim = Simulator(SimulationConfig(seed=7, users=1000, start_ms=start, activity=activity))
        events = itertools.takewhile(lambda e: e.ts_ms < start + 120_000, sim.events())
        return sum(1 for _ in events)

    busy, calm = first_two_minutes(60.0), first_two_minutes(1.0)
    assert busy > 20 * calm and busy > 500, (busy, calm)


def test_session_gap_floor_and_fade_start() -> None:
    """The demo's shape: sessions as close as the floor allows (more than the worker's session
    timeout apart, so still separate sessions), and a cohort that fades only from its start."""
    start, floor = 1_795_000_000_000, session_gap_floor(120)
    cfg = SimulationConfig(
        seed=5, users=300, start_ms=start, activity=600, fade_seconds=60,
        fade_start_ms=start + 20 * 60_000, session_gap_floor_seconds=floor,
    )  # fmt: skip
    sim = Simulator(cfg)
    fading = sim.fading_users()
    sessions: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for e in itertools.takewhile(lambda e: e.ts_ms < start + 40 * 60_000, sim.events()):
        if "session_id" in e.event:
            sessions[e.event["user_id"]][e.event["session_id"]].append(e.ts_ms)
    gaps = []
    for by_session in sessions.values():
        spans = sorted((min(t), max(t)) for t in by_session.values())
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert min(gaps) >= floor * 1000 > 120_000
    assert sorted(gaps)[len(gaps) // 2] < floor * 1000 + 60_000  # at the floor, mostly

    def sessions_per_user(cohort: bool, lo: int, hi: int) -> float:
        users = [u for u in sessions if (u in fading) == cohort]
        n = sum(
            1
            for u in users
            for t in sessions[u].values()
            if lo * 60_000 <= min(t) - start < hi * 60_000
        )
        return n / len(users)

    before, after = sessions_per_user(True, 5, 20), sessions_per_user(True, 25, 40)
    assert before > 0.8 * sessions_per_user(False, 5, 20)  # not fading before its start
    assert after < 0.05 * before  # and gone within its 60 s fade
