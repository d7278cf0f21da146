"""Decoder: every event type accepted, every rejection reason produced, Segment mapped."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import _default_segment_map
from stream.contract.decode import Decoder, Event, Rejection
from stream.contract.types import FAMILY_OF, EventType, Reason

NOW = 1_767_225_600_000
DECODER = Decoder(
    max_message_bytes=65536, max_future_skew_ms=300_000, segment_event_map=_default_segment_map()
)

PROPS: dict[str, dict[str, object]] = {
    "ticket_created": {"ticket_id": "t1", "priority": "high"},
    "ticket_replied": {"ticket_id": "t1", "author": "agent", "public": True},
    "ticket_solved": {"ticket_id": "t1"},
    "ticket_reopened": {"ticket_id": "t1"},
    "ticket_closed": {"ticket_id": "t1"},
    "nps_response": {"score": 9},
    "csat_response": {"score": 4},
    "ces_response": {"score": 6},
    "purchase": {"amount": 19.5, "currency": "USD"},
}


def native(type_: str, **overrides: object) -> bytes:
    body = {
        "event_id": "e1",
        "type": type_,
        "ts": NOW - 1000,
        "user_id": "u1",
        "properties": PROPS.get(type_, {}),
    }
    body.update(overrides)
    return orjson.dumps(body)


@pytest.mark.parametrize("event_type", [t for t in EventType if t != EventType.IDENTIFY])
def test_every_event_type_is_accepted(event_type: EventType) -> None:
    out = DECODER.decode(native(event_type.value), NOW)
    assert isinstance(out, Event), out
    assert out.type == event_type.value and out.ts_ms == NOW - 1000
    assert event_type in FAMILY_OF


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"x" * 70_000, Reason.OVERSIZED),
        (b"{nope", Reason.NOT_JSON),
        (b"\xff\xfe", Reason.NOT_JSON),
        (b"7 garbage", Reason.NOT_JSON),  # starts like a number: still no JSON document
        (b"12", Reason.SCHEMA),  # a JSON document, of the wrong shape
        (b"[1, 2]", Reason.SCHEMA),
        (native("page_view", user_id=7), Reason.SCHEMA),
        (native("page_view", properties={"page": 5}), Reason.SCHEMA),
        (native("page_view", user_id="u" * 300), Reason.SCHEMA),
        (orjson.dumps({"ts": NOW, "user_id": "u", "event_id": "e"}), Reason.SCHEMA),
        (native("page_view", event_id=""), Reason.MISSING_EVENT_ID),
        (native("page_view", event_id=None), Reason.MISSING_EVENT_ID),
        (native("page_view", user_id=None), Reason.MISSING_USER_ID),
        (native("warp_drive"), Reason.UNKNOWN_TYPE),
        (native("page_view", ts="2026-01-01T00:00:00"), Reason.BAD_TIMESTAMP),
        (native("page_view", ts="yesterday"), Reason.BAD_TIMESTAMP),
        (native("page_view", ts=None), Reason.BAD_TIMESTAMP),
        (native("page_view", ts=1_700_000_000), Reason.BAD_TIMESTAMP),  # seconds, not ms
        (native("page_view", ts=NOW + 301_000), Reason.FUTURE_TIMESTAMP),
        (native("nps_response", properties={"score": 11}), Reason.OUT_OF_RANGE),
        (native("csat_response", properties={"score": 0}), Reason.OUT_OF_RANGE),
        (native("ces_response", properties={"score": 8}), Reason.OUT_OF_RANGE),
        (
            native("nps_response", properties={"score": 10**18}).replace(
                b"1000000000000000000", b"1" + b"0" * 30
            ),
            Reason.OUT_OF_RANGE,
        ),
        (native("purchase", properties={"amount": -1.0}), Reason.OUT_OF_RANGE),
        (
            native("nps_response", properties={"score": 1}).replace(b'"score":1', b'"score":1e400'),
            Reason.OUT_OF_RANGE,
        ),
        (native("nps_response", properties={}), Reason.SCHEMA),
        (native("ticket_replied", properties={"ticket_id": "t", "author": "alien"}), Reason.SCHEMA),
        (native("ticket_solved", properties={}), Reason.SCHEMA),
    ],
)
def test_rejections_have_the_right_reason(raw: bytes, reason: Reason) -> None:
    out = DECODER.decode(raw, NOW)
    assert isinstance(out, Rejection), out
    assert out.reason == reason, out.detail


def test_rfc3339_with_offset() -> None:
    out = DECODER.decode(native("click", ts="2026-01-01T02:00:00+02:00"), NOW)
    assert isinstance(out, Event) and out.ts_ms == NOW


def test_segment_page_screen_track_identify() -> None:
    iso = "2025-12-31T23:59:00Z"
    page = DECODER.decode(
        orjson.dumps(
            {
                "type": "page",
                "messageId": "m",
                "anonymousId": "a",
                "timestamp": iso,
                "properties": {"path": "/x"},
            }
        ),
        NOW,
    )
    assert isinstance(page, Event)
    assert (page.type, page.user_id, page.props.page, page.event_id) == (
        "page_view",
        "a",
        "/x",
        "m",
    )
    screen = DECODER.decode(
        orjson.dumps(
            {"type": "screen", "messageId": "m", "userId": "u", "timestamp": iso, "name": "Home"}
        ),
        NOW,
    )
    assert isinstance(screen, Event) and (screen.type, screen.props.page) == ("screen_view", "Home")
    track = DECODER.decode(
        orjson.dumps(
            {
                "type": "track",
                "messageId": "m",
                "userId": "u",
                "timestamp": iso,
                "event": "Order Completed",
            }
        ),
        NOW,
    )
    assert isinstance(track, Event) and track.type == "conversion"
    ident = DECODER.decode(
        orjson.dumps(
            {
                "type": "identify",
                "messageId": "m",
                "userId": "u",
                "timestamp": iso,
                "traits": {"plan": "pro"},
            }
        ),
        NOW,
    )
    assert isinstance(ident, Event) and ident.type == "identify"
    unmapped = DECODER.decode(
        orjson.dumps(
            {"type": "track", "messageId": "m", "userId": "u", "timestamp": iso, "event": "Nope"}
        ),
        NOW,
    )
    assert isinstance(unmapped, Rejection) and unmapped.reason == Reason.UNKNOWN_TYPE


def test_segment_map_is_configurable() -> None:
    custom = Decoder(
        max_message_bytes=65536, max_future_skew_ms=0, segment_event_map={"Liked Post": "like"}
    )
    out = custom.decode(
        orjson.dumps(
            {
                "type": "track",
                "messageId": "m",
                "userId": "u",
                "timestamp": NOW - 5,
                "event": "Liked Post",
            }
        ),
        NOW,
    )
    assert isinstance(out, Event) and out.type == "like"


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(DECODER.decode(data, NOW), Event | Rejection)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "type",
                "ts",
                "user_id",
                "properties",
                "session_id",
                "messageId",
                "userId",
                "timestamp",
                "event",
            ]
        ),
        json_values,
    )
)
def test_arbitrary_envelopes_never_raise(body: dict[str, object]) -> None:
    assert isinstance(DECODER.decode(json.dumps(body).encode(), NOW), Event | Rejection)


@given(st.binary(max_size=64))
def test_bytes_that_are_no_json_document_are_not_json(raw: bytes) -> None:
    """Whatever they start with (a digit, a quote, a bracket): bytes that the standard
    library cannot parse as one JSON document are ``not_json``, never ``schema``."""
    try:
        json.loads(raw)
    except ValueError:
        out = DECODER.decode(raw, NOW)
        assert isinstance(out, Rejection) and out.reason == Reason.NOT_JSON, (raw, out)
