"""Hostile input, property-based: whatever arrives, the outcome is an Event or a Rejection.

Everything user-controlled that reaches a Redis key, a hash field or a Prometheus label is
covered too: escaping is injective and delimiter-free, digests of id tuples cannot be forged
into each other, and label sets stay within their cap whatever the values.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context, build_keyed_states, build_layout
from stream.contract.decode import MAX_ID_CHARS, Event, Rejection
from stream.contract.types import EventType, Reason
from stream.engine.deltas import build_call, pair_digest
from stream.engine.fold import fold_records
from stream.engine.keys import FIELD_SEP, escape, field, unescape
from stream.engine.windows import Windows
from stream.metrics.export import OTHER, cap_labels
from tests.unit.test_decode import DECODER, NOW

# Thousands of hypothesis examples a test: the full run only (not the working tier).
pytestmark = pytest.mark.slow

#: Characters that mean something in our key scheme, Redis Cluster hash tags or percent-encoding.
DELIMITERS = ":{}|%,;\x00 \n\\/"
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(DELIMITERS + "aZ0é€𝄞"), max_size=40),
    st.text(min_size=200, max_size=400),  # around the decoder's length limits
    st.sampled_from(["other", "(not set)", "", "%3A", "{shard.0}", "a|b", "ev|page_view"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([NOW - 1000, NOW + 10**9, 2**63, -(2**63) - 1, 2**64, 0, -1]),
)
json_leaf = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=20,
)
PROPERTY_NAMES = ["page", "path", "campaign", "placement", "feature", "platform", "channel"]
PROPERTY_NAMES += ["ticket_id", "author", "score", "amount", "currency", "plan", "post_id"]


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-shaped envelopes with hostile values, so checks past the parser are reached."""
    types = [t.value for t in EventType] + ["page", "screen", "track", "identify", "x:{y}"]
    body: dict[str, Any] = {
        "type": draw(st.sampled_from(types) | hostile_text),
        "event_id": draw(hostile_text | json_value),
        "user_id": draw(hostile_text | json_value),
        "ts": draw(st.just(NOW - 60_000) | numbers | hostile_text),
    }
    if draw(st.booleans()):
        body["session_id"] = draw(hostile_text)
    props = {name: draw(json_leaf) for name in draw(st.lists(st.sampled_from(PROPERTY_NAMES)))}
    if draw(st.booleans()):
        props["extra"] = draw(json_value)
    body["properties"] = props
    return body


def _check_outcome(outcome: Event | Rejection) -> None:
    if isinstance(outcome, Rejection):
        assert outcome.reason in set(Reason)
        assert isinstance(outcome.detail, str) and outcome.detail
        return
    assert isinstance(outcome, Event)
    assert outcome.user_id and len(outcome.user_id) <= MAX_ID_CHARS
    assert 946_684_800_000 <= outcome.ts_ms <= NOW + 300_000
    for text in (outcome.user_id, outcome.event_id, outcome.session_id, outcome.props.campaign):
        if text is not None:
            text.encode()  # no lone surrogates: Redis and the hash functions need UTF-8


@settings(max_examples=3000)
@given(st.binary(max_size=2048))
@example(b"[" * 5000 + b"]" * 5000)  # found by this test: msgspec raised RecursionError
@example(b'{"type":"page_view","properties":{"x":' + b"[" * 3000 + b"]" * 3000 + b"}}")
@example(b'{"type":"page_view","event_id":"e","user_id":"\\ud800","ts":1}')
@example(b'{"type":"page_view","event_id":"e","user_id":"u","ts":NaN}')
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check_outcome(DECODER.decode(data, NOW))


@settings(max_examples=3000)
@given(envelopes(), st.integers(min_value=0, max_value=2000))
def test_hostile_envelopes_decode_to_event_or_rejection(body: dict[str, Any], depth: int) -> None:
    data = json.dumps(body, allow_nan=True).encode()  # allow_nan: emits NaN / Infinity literals
    if depth > 1000:  # an unknown key nested deeper than Python's recursion limit
        data = b'{"deep":' + b"[" * depth + b"]" * depth + b"," + data[1:]
    _check_outcome(DECODER.decode(data, NOW))


SETTINGS = Settings(kafka_bootstrap_servers="unused", redis_url="unused", key_prefix="es")
WINDOWS = Windows(SETTINGS.zone)
FOLD = build_fold_context(SETTINGS, WINDOWS, build_keyed_states(SETTINGS))
LAYOUT = build_layout(SETTINGS, WINDOWS)
KEY_SHAPE = re.compile(r"^es:\{clickstream\.0(\.[0-9a-z]+)?\}:[A-Za-z0-9_.~%|:-]+$")


class _Rec(msgspec.Struct):
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes | None]] = []


@settings(max_examples=1000)
@given(st.lists(envelopes(), min_size=1, max_size=8))
def test_hostile_batches_fold_into_well_formed_keys(bodies: list[dict[str, Any]]) -> None:
    """Accepted hostile events reach Redis only through escaped, delimiter-free key parts."""
    records = [
        _Rec(i, b"k", json.dumps(b, allow_nan=True).encode(), NOW) for i, b in enumerate(bodies)
    ]
    result = fold_records(records, FOLD, -1, NOW)
    assert result.accepted + len(result.rejected) == len(records)
    keys, _ = build_call(result.deltas, LAYOUT, "clickstream.0", -1, len(records) - 1, NOW, NOW)
    for key in keys:
        assert KEY_SHAPE.match(key), key
    for fields in result.deltas.counters.values():
        for name in fields:
            assert all(":" not in p and "{" not in p for p in name.split(FIELD_SEP))


@settings(max_examples=3000)
@given(hostile_text, hostile_text)
def test_escape_is_injective_and_delimiter_free(a: str, b: str) -> None:
    ea, eb = escape(a), escape(b)
    assert unescape(ea) == a  # a left inverse exists, so escape is injective
    assert (ea == eb) == (a == b)
    assert not set(ea) & set(":{}|,; \x00") and ea.isascii()


@settings(max_examples=3000)
@given(hostile_text, hostile_text, hostile_text, hostile_text)
def test_two_part_fields_never_collide(c1: str, p1: str, c2: str, p2: str) -> None:
    f1, f2 = field("imp", escape(c1), escape(p1)), field("imp", escape(c2), escape(p2))
    assert (f1 == f2) == ((c1, p1) == (c2, p2))


@settings(max_examples=3000)
@given(hostile_text, hostile_text, hostile_text)
@example("a", "b", "c")
def test_id_digests_cannot_be_forged_with_separators(a: str, b: str, c: str) -> None:
    """(user, session) pairs are digested: a NUL inside an id must not shift the boundary."""
    assert pair_digest(a + "\x00" + b, c) != pair_digest(a, b + "\x00" + c)
    if (a, b) != (c, b):
        assert pair_digest(a, b) != pair_digest(c, b)


label_values = st.dictionaries(
    st.tuples(hostile_text), st.floats(min_value=0, max_value=1e12), max_size=300
)


@settings(max_examples=2000)
@given(label_values, st.integers(min_value=1, max_value=60))
@example({("other",): 100.0, ("a",): 1.0, ("b",): 1.0, ("c",): 1.0}, 2)  # found: other lost
def test_label_sets_are_capped_and_nothing_is_lost(
    values: dict[tuple[str, ...], float], limit: int
) -> None:
    capped = cap_labels(values, limit)
    assert len(capped) <= limit
    assert abs(sum(capped.values()) - sum(values.values())) <= 1e-6 * (1 + sum(values.values()))
    assert set(capped) <= set(values) | {(OTHER,)}
