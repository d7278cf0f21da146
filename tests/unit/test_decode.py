"""Decoder: every event type accepted, every rejection reason produced, Segment mapped."""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import _default_segment_map
from stream.contract.decode import (
    SEGMENT_ONLY_FIELDS,
    Decoder,
    Event,
    NativeMessage,
    RawMessage,
    Rejection,
)
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


ENVELOPE_KEYS = [
    "event_id",
    "type",
    "ts",
    "user_id",
    "properties",
    "session_id",
    "account_id",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "event",
    "name",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values))
def test_arbitrary_envelopes_never_raise(body: dict[str, object]) -> None:
    assert isinstance(DECODER.decode(json.dumps(body).encode(), NOW), Event | Rejection)


def _outcome(out: Event | Rejection) -> tuple[object, ...]:
    """What a decode decided, whichever struct carries it."""
    if isinstance(out, Rejection):
        return ("rejected", out.reason, out.detail)
    fields = ("event_id", "type", "ts_ms", "user_id", "session_id", "account_id", "props")
    return ("event", *(getattr(out, name) for name in fields))


envelope_values = st.one_of(
    json_values,
    st.sampled_from([t.value for t in EventType] + ["track", "page", "", "e1", "u1"]),
    st.integers(min_value=NOW - 10**9, max_value=NOW + 10**9),
    st.fixed_dictionaries(
        {}, optional={"page": st.text(max_size=5), "score": json_values, "ticket_id": json_values}
    ),
    st.text(min_size=190, max_size=300),  # around the length bounds of ids and names
)


@given(
    st.sampled_from([t.value for t in EventType]),
    st.dictionaries(st.sampled_from(ENVELOPE_KEYS), envelope_values, max_size=3),
    st.sets(st.sampled_from(ENVELOPE_KEYS), max_size=2),
)
def test_the_fast_path_decides_as_the_full_path(
    kind: str, overrides: dict[str, object], dropped: set[str]
) -> None:
    """``decode`` takes our envelope in one struct; ``_decode_raw`` reads every shape. On a
    valid event with a few keys changed or dropped, both accept the same event or reject it
    with the same reason."""
    body = {**json.loads(native(kind)), "session_id": "s1", **overrides}
    data = json.dumps({k: v for k, v in body.items() if k not in dropped}).encode()
    assert _outcome(DECODER.decode(data, NOW)) == _outcome(DECODER._decode_raw(data, NOW))


def test_the_fast_path_keeps_no_second_struct() -> None:
    """The common case is one decode: the event is the decoded struct, properties included."""
    decoder = Decoder(max_message_bytes=65536, max_future_skew_ms=300_000, segment_event_map={})
    out = decoder.decode(native("page_view", properties={"page": "/"}), NOW)
    assert isinstance(out, Event) and type(out) is not Event and out.props.page == "/"
    assert _outcome(out) == _outcome(
        DECODER._decode_raw(native("page_view", properties={"page": "/"}), NOW)
    )


@given(st.binary(max_size=64))
def test_bytes_that_are_no_json_document_are_not_json(raw: bytes) -> None:
    """Whatever they start with (a digit, a quote, a bracket): bytes that the standard
    library cannot parse as one JSON document are ``not_json``, never ``schema``."""
    try:
        json.loads(raw)
    except ValueError:
        out = DECODER.decode(raw, NOW)
        assert isinstance(out, Rejection) and out.reason == Reason.NOT_JSON, (raw, out)


def test_a_stream_the_fast_path_cannot_take_stops_trying_it_and_comes_back() -> None:
    """Segment messages would each pay a failed fast decode: after a run of them the decoder
    goes to the full path first, probing now and then, and a native event brings it back."""
    decoder = Decoder(
        max_message_bytes=65536, max_future_skew_ms=300_000, segment_event_map={"Liked": "like"}
    )
    track = orjson.dumps(
        {"type": "track", "event": "Liked", "messageId": "m1", "userId": "u1", "timestamp": NOW}
    )
    for _ in range(100):
        out = decoder.decode(track, NOW)
        assert type(out) is Event and out.type == "like"  # the full path's struct
    assert decoder._fast_misses == 100
    taken_by = []
    for i in range(64):
        out = decoder.decode(native("page_view"), NOW)
        assert isinstance(out, Event) and out.type == "page_view"
        if type(out) is not Event:
            taken_by.append(i)
    assert taken_by and taken_by == list(range(taken_by[0], 64))  # fast again from the probe on
    assert decoder._fast_misses == 0


def test_the_fast_path_checks_every_field_the_full_path_checks() -> None:
    """Every RawMessage field is our envelope's (renamed or not) or a Segment-only one, and
    the fast path's struct declares each Segment-only one with RawMessage's own type."""
    raw = {f.name: f for f in msgspec.structs.fields(RawMessage)}
    fast = {f.encode_name: f for f in msgspec.structs.fields(NativeMessage)}
    assert set(raw) == set(fast)
    for name in SEGMENT_ONLY_FIELDS:
        assert (fast[name].type, fast[name].default) == (raw[name].type, raw[name].default)
