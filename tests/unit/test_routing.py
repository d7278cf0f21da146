"""Replay's router keys every message by the user the decoder attributes it to, and picks the
topic of the family the decoder decides — so one user's events share a partition."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import _default_segment_map
from stream.contract.decode import Decoder, Event
from stream.contract.types import FAMILY_OF, EventType, Family
from stream.tools.routing import Router

NOW = 1_767_225_600_000
SEGMENT_MAP = _default_segment_map()
DECODER = Decoder(max_message_bytes=65536, max_future_skew_ms=0, segment_event_map=SEGMENT_MAP)
TOPICS = {family: f"topic.{family.value}" for family in Family}
ROUTER = Router(TOPICS, "default", SEGMENT_MAP)

_ids = st.one_of(st.none(), st.just(""), st.sampled_from(["u1", "u2", "anon-1"]))
_types = st.sampled_from(
    [t.value for t in EventType] + ["page", "screen", "track", "identify", "group", "nope"]
)
_props = {
    "nps_response": {"score": 9},
    "csat_response": {"score": 4},
    "ces_response": {"score": 5},
    **{t.value: {"ticket_id": "t", "author": "agent"} for t in EventType if "ticket" in t.value},
}


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(_types)
    body: dict[str, Any] = {"type": kind, "event_id": "e1", "ts": NOW - 1000}
    for name in ("user_id", "userId", "anonymousId"):
        value = draw(_ids)
        if value is not None or draw(st.booleans()):
            body[name] = value
    if kind == "track":
        body["event"] = draw(st.sampled_from([*SEGMENT_MAP, "Unmapped Thing"]))
    mapped = SEGMENT_MAP.get(body.get("event", ""), kind) if kind == "track" else kind
    body["properties"] = _props.get(mapped, {})
    return body


@given(messages())
def test_key_and_topic_agree_with_the_decoder(body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    topic, key = ROUTER.route(raw)
    decoded = DECODER.decode(raw, NOW)
    if isinstance(decoded, Event):
        assert key == decoded.user_id.encode()
        assert topic == TOPICS[FAMILY_OF[EventType(decoded.type)]]


@pytest.mark.parametrize(
    ("body", "user"),
    [
        # Segment: userId, then anonymousId, then user_id — whatever else the message carries.
        ({"type": "track", "event": "Feature Used", "userId": "seg", "user_id": "ours"}, "seg"),
        ({"type": "page", "anonymousId": "anon", "user_id": "ours"}, "anon"),
        ({"type": "page", "userId": "", "anonymousId": "anon", "user_id": "ours"}, "anon"),
        ({"type": "screen", "user_id": "ours"}, "ours"),
        ({"type": "identify", "userId": "seg", "user_id": "ours"}, "seg"),
        # Native types: user_id only; the Segment names do not count.
        ({"type": "page_view", "userId": "seg", "user_id": "ours"}, "ours"),
        ({"type": "click", "anonymousId": "anon"}, ""),
    ],
)
def test_segment_and_native_user_precedence(body: dict[str, Any], user: str) -> None:
    message = {"event_id": "e", "ts": NOW - 1, **body}
    _, key = ROUTER.route(orjson.dumps(message))
    assert key == user.encode()
    decoded = DECODER.decode(orjson.dumps(message), NOW)
    if user:
        assert isinstance(decoded, Event) and decoded.user_id == user


@pytest.mark.parametrize(
    ("raw", "topic"),
    [
        (b'{"type": "track", "event": "Order Completed"}', TOPICS[Family.CLICKSTREAM]),
        (b'{"type": "track", "event": "Subscription Started"}', TOPICS[Family.ACCOUNT]),
        (b'{"type": "identify"}', TOPICS[Family.ACCOUNT]),
        (b'{"type": "nps_response"}', TOPICS[Family.FEEDBACK]),
        (b'{"type": "track", "event": "Unmapped"}', "default"),
        (b'{"type": "warp_drive"}', "default"),
        (b"{not json", "default"),
        (b'{"type": 7}', "default"),
    ],
)
def test_topics(raw: bytes, topic: str) -> None:
    assert ROUTER.route(raw)[0] == topic
