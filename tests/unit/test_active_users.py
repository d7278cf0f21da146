"""Who makes a user active: only what the user did (metric-definitions.md, "active user").

Every event of a ticket carries the requester's ``user_id`` and renewals are automatic, so the
fold must not count an agent's reply, a bot's, a solve, a close or a renewal as the user's
activity. The batch reference's own rule (``tests/support/reference.py``) is the oracle.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context
from stream.contract.types import EventType
from stream.engine.fold import fold_records
from stream.engine.windows import Windows
from stream.metrics.compute import ACTIVE_SET
from tests.support.reference import done_by_the_user

SETTINGS = Settings()
CTX = build_fold_context(SETTINGS, Windows(SETTINGS.zone))
NOW = 1_800_000_000_000


class Rec:
    def __init__(self, offset: int, event: dict[str, Any]) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, orjson.dumps(event), b"u", 0
        self.headers: list[tuple[str, bytes | None]] = []


def _event(i: int, type_: str, author: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {"ticket_id": "T-1", "score": 4, "post_id": "p", "page": "/"}
    if author is not None:
        props["author"] = author
    return {"event_id": f"e{i}", "type": type_, "ts": NOW - 1000, "user_id": f"u{i}",
            "properties": props}  # fmt: skip


def active(events: list[dict[str, Any]]) -> set[str]:
    result = fold_records([Rec(i, e) for i, e in enumerate(events)], CTX, -1, NOW)
    assert result is not None and not result.rejected, result and result.rejected
    return {
        u for (_, name), users in result.deltas.users.items() if name == ACTIVE_SET for u in users
    }


def test_an_agents_reply_alone_does_not_make_the_requester_active() -> None:
    assert active([_event(1, "ticket_replied", "agent")]) == set()
    assert active([_event(1, "ticket_replied", "bot")]) == set()
    assert active([_event(1, "ticket_replied", "requester")]) == {"u1"}


def test_solves_closes_renewals_and_agent_created_tickets_are_not_the_users() -> None:
    events = [
        _event(1, "ticket_solved", None),
        _event(2, "ticket_closed", None),
        _event(3, "subscription_renewed", None),
        _event(4, "ticket_created", "agent"),
        _event(5, "ticket_created", None),  # the requester opened it
        _event(6, "subscription_cancelled", None),  # the user cancelled
        _event(7, "page_view", "agent"),  # `author` means nothing outside support
    ]
    assert active(events) == {"u5", "u6", "u7"}


KINDS = [t.value for t in EventType if t is not EventType.IDENTIFY]


@given(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from([None, "agent", "bot",
       "requester", "someone"])), min_size=1, max_size=30))  # fmt: skip
def test_the_fold_counts_exactly_the_events_the_user_did(
    kinds: list[tuple[str, str | None]],
) -> None:
    events = [
        _event(i, t, a if t != "ticket_replied" or a in ("agent", "bot", "requester") else "agent")
        for i, (t, a) in enumerate(kinds)
    ]
    assert active(events) == {e["user_id"] for e in events if done_by_the_user(e)}


def test_the_tables_are_settings() -> None:
    s = Settings(passive_events=["impression"], passive_authors=[])
    ctx = build_fold_context(s, Windows(s.zone))
    events = [_event(1, "ticket_solved", None), _event(2, "ticket_replied", "agent")]
    result = fold_records([Rec(i, e) for i, e in enumerate(events)], ctx, -1, NOW)
    assert result is not None
    assert result.deltas.users[(NOW // 60_000 * 60 - 60, ACTIVE_SET)] == {"u1", "u2"}
