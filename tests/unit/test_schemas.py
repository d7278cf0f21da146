"""docs/schemas/*.schema.json and docs/events.md agree with the decoder, which is the contract.

Every schema is a valid draft 2020-12 schema; events the decoder accepts validate against their
family's schema; events it rejects for a reason a schema can express fail the schema; every event
type and reason code is in the schemas and the documentation; the documentation's examples are
accepted (or, for the dead-letter example, rejected for the reason they claim).
"""

from __future__ import annotations

import base64
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from stream.config.settings import _default_segment_map
from stream.contract.decode import Decoder, Event, Rejection
from stream.contract.types import FAMILY_OF, REPLY_AUTHORS, SCORE_RANGE, EventType, Family, Reason
from stream.engine.dlq import dlq_record
from stream.engine.fold import Rejected

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "docs" / "schemas"
EVENTS_DOC = ROOT / "docs" / "events.md"

EVENT_SCHEMAS = ["envelope", *(family.value for family in Family)]
SCHEMA_NAMES = [*EVENT_SCHEMAS, "dead-letter"]

TS = 1_795_860_000_000  # 2026-11-28T10:00:00Z, the time of every example
NOW = TS + 60_000
DECODER = Decoder(
    max_message_bytes=65536, max_future_skew_ms=300_000, segment_event_map=_default_segment_map()
)

#: Reasons a JSON Schema cannot express: message size, non-JSON bytes, the worker's clock, the
#: partition's watermark and its recent event ids.
NOT_EXPRESSIBLE = {
    Reason.OVERSIZED,
    Reason.NOT_JSON,
    Reason.FUTURE_TIMESTAMP,
    Reason.LATE,
    Reason.DUPLICATE,
}

#: The properties each type needs to be accepted.
REQUIRED_PROPS: dict[str, dict[str, Any]] = {
    **{t.value: {"ticket_id": "T-7"} for t in EventType if t.value.startswith("ticket_")},
    EventType.TICKET_REPLIED.value: {"ticket_id": "T-7", "author": "agent"},
    EventType.NPS_RESPONSE.value: {"score": 9},
    EventType.CSAT_RESPONSE.value: {"score": 4},
    EventType.CES_RESPONSE.value: {"score": 6},
}

#: Every property the decoder reads, with a value it accepts on any type.
ALL_PROPS: dict[str, Any] = {
    "page": "/pricing",
    "path": "/pricing",
    "platform": "web",
    "channel": "paid",
    "campaign": "spring",
    "placement": "hero",
    "feature": "export",
    "post_id": "P-1",
    "ticket_id": "T-7",
    "author": "agent",
    "public": True,
    "priority": "high",
    "score": 5,
    "touchpoint": "email",
    "plan": "pro",
    "amount": 19.5,
    "currency": "EUR",
}


def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return data


@cache
def _registry() -> Registry[Any]:
    return Registry().with_resources(
        (f"{name}.schema.json", Resource.from_contents(_schema(name))) for name in SCHEMA_NAMES
    )


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(_schema(name), registry=_registry())


def family_schema(event_type: str) -> Draft202012Validator:
    return validator(FAMILY_OF[EventType(event_type)].value)


_NEEDED: Any = object()


def event(type_: str, properties: Any = _NEEDED, **fields: Any) -> dict[str, Any]:
    """A native event of ``type_`` (by default with the properties it needs), ``fields`` last."""
    body: dict[str, Any] = {
        "event_id": "e-1",
        "type": type_,
        "ts": TS,
        "user_id": "u-42",
        "properties": REQUIRED_PROPS.get(type_, {}) if properties is _NEEDED else properties,
    }
    body.update(fields)
    return body


def decode(body: Any) -> Event | Rejection:
    return DECODER.decode(orjson.dumps(body), NOW)


def schema_errors(name: str, body: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(body)]


# ---- (a) the schemas themselves ---------------------------------------------------------------


def test_schema_directory_holds_exactly_the_tested_schemas() -> None:
    found = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    assert found == sorted(f"{name}.schema.json" for name in SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = _schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{name}.schema.json"
    Draft202012Validator.check_schema(schema)


# ---- (b) what the decoder accepts validates ---------------------------------------------------


def _valid_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for t in EventType:
        v = t.value
        cases.append((f"{v}-minimal", event(v)))
        full = {**ALL_PROPS, **REQUIRED_PROPS.get(v, {})}
        extra = {"session_id": "s-9", "account_id": "a-1", "ts": "2026-11-28T10:00:00Z"}
        cases.append((f"{v}-full", event(v, full, **extra)))
    cases += [
        ("ts-offset", event("click", ts="2026-11-28T11:00:00+01:00")),
        ("ts-offset-no-colon", event("click", ts="2026-11-28T11:00:00+0100")),
        ("ts-space-lowercase", event("click", ts="2026-11-28 10:00:00.123z")),
        ("ts-float", event("click", ts=TS + 0.5)),
        ("ts-lower-bound", event("click", ts=946_684_800_000)),
        ("ts-lower-bound-string", event("click", ts="2000-01-01T00:00:00Z")),
        ("nulls", event("page_view", {"page": None}, session_id=None, account_id=None)),
        ("properties-null", event("like", None)),
        ("properties-absent", {k: v for k, v in event("share").items() if k != "properties"}),
        ("property-nulls", event("page_view", dict.fromkeys(ALL_PROPS))),
        (
            "unknown-keys-ignored",
            event(
                "feature_used",
                {"feature": "export", "x": [1, {"y": None}], "score_text": "n/a"},
                context={"ip": "10.0.0.1"},
                version=2,
            ),
        ),
        (
            "segment-fields-typed-but-unused",
            event(
                "page_view",
                messageId="m-1",
                userId="u-1",
                anonymousId="a-1",
                timestamp="2026-11-28T10:00:00",
                event="Whatever",
                name="Home",
            ),
        ),
        ("amount-zero", event("purchase", {"amount": 0})),
        ("amount-int", event("conversion", {"amount": 20})),
        ("negative-amount-unchecked-type", event("subscription_cancelled", {"amount": -5})),
        ("author-on-other-ticket-type", event("ticket_solved", {"ticket_id": "T", "author": "x"})),
        (
            "identify-with-timestamp",
            event("identify", {"plan": "pro"}, timestamp="2026-11-28T10:00:00Z"),
        ),
        ("longest-ids", event("click", event_id="e" * 256, user_id="😀" * 256)),
        ("longest-name", event("click", {"campaign": "c" * 200})),
    ]
    for t, (low, high) in SCORE_RANGE.items():
        cases.append((f"{t.value}-low", event(t.value, {"score": low})))
        cases.append((f"{t.value}-high", event(t.value, {"score": high})))
    for author in sorted(REPLY_AUTHORS):
        cases.append(
            (f"author-{author}", event("ticket_replied", {"ticket_id": "T", "author": author}))
        )
    return cases


VALID = _valid_cases()


@pytest.mark.parametrize(("label", "body"), VALID, ids=[label for label, _ in VALID])
def test_accepted_events_validate(label: str, body: dict[str, Any]) -> None:
    out = decode(body)
    assert isinstance(out, Event), out
    assert out.type == body["type"]
    assert schema_errors("envelope", body) == []
    assert schema_errors(FAMILY_OF[EventType(out.type)].value, body) == []


def test_valid_cases_cover_every_event_type() -> None:
    assert {body["type"] for _, body in VALID} == {t.value for t in EventType}


# ---- (c) what the decoder rejects fails the schema --------------------------------------------


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def _invalid_cases() -> list[tuple[str, Any, Reason]]:
    r = Reason
    cases: list[tuple[str, Any, Reason]] = [
        ("not-an-object", [1, 2], r.SCHEMA),
        ("null-message", None, r.SCHEMA),
        ("type-missing", _without(event("click"), "type"), r.SCHEMA),
        ("type-null", event("click", type=None), r.SCHEMA),
        ("type-too-long", event("click", type="x" * 201), r.SCHEMA),
        ("user-id-number", event("click", user_id=7), r.SCHEMA),
        ("event-id-number", event("click", event_id=7), r.SCHEMA),
        ("user-id-too-long", event("click", user_id="u" * 257), r.SCHEMA),
        ("session-id-number", event("click", session_id=3), r.SCHEMA),
        ("properties-array", event("click", properties=[]), r.SCHEMA),
        ("page-number", event("page_view", {"page": 5}), r.SCHEMA),
        ("page-too-long", event("page_view", {"page": "p" * 201}), r.SCHEMA),
        ("score-string-on-any-type", event("page_view", {"score": "x"}), r.SCHEMA),
        ("public-string", event("ticket_replied", {**ALL_PROPS, "public": "yes"}), r.SCHEMA),
        ("amount-string", event("purchase", {"amount": "5"}), r.SCHEMA),
        ("score-bool", event("csat_response", {"score": True}), r.SCHEMA),
        ("score-null", event("nps_response", {"score": None}), r.SCHEMA),
        ("score-properties-null", event("nps_response", None), r.SCHEMA),
        ("reserved-name-number", event("page_view", name=5), r.SCHEMA),
        ("reserved-message-id-too-long", event("page_view", messageId="m" * 257), r.SCHEMA),
        ("ticket-id-empty", event("ticket_created", {"ticket_id": ""}), r.SCHEMA),
        ("author-missing", event("ticket_replied", {"ticket_id": "T"}), r.SCHEMA),
        (
            "author-unknown",
            event("ticket_replied", {"ticket_id": "T", "author": "alien"}),
            r.SCHEMA,
        ),
        ("event-id-missing", _without(event("click"), "event_id"), r.MISSING_EVENT_ID),
        ("event-id-empty", event("click", event_id=""), r.MISSING_EVENT_ID),
        ("event-id-null", event("click", event_id=None), r.MISSING_EVENT_ID),
        (
            "native-with-message-id-only",
            _without(event("click", messageId="m-1"), "event_id"),
            r.MISSING_EVENT_ID,
        ),
        ("user-id-missing", _without(event("click"), "user_id"), r.MISSING_USER_ID),
        ("user-id-empty", event("click", user_id=""), r.MISSING_USER_ID),
        ("user-id-null", event("click", user_id=None), r.MISSING_USER_ID),
        (
            "native-with-user-id-only",
            _without(event("click", userId="u-1"), "user_id"),
            r.MISSING_USER_ID,
        ),
        ("type-unknown", event("warp_drive"), r.UNKNOWN_TYPE),
        ("type-empty", event(""), r.UNKNOWN_TYPE),
        ("type-wrong-case", event("Page_View"), r.UNKNOWN_TYPE),
        ("segment-group-call", event("group"), r.UNKNOWN_TYPE),
        ("ts-missing", _without(event("click"), "ts"), r.BAD_TIMESTAMP),
        ("ts-null", event("click", ts=None), r.BAD_TIMESTAMP),
        ("ts-seconds", event("click", ts=TS // 1000), r.BAD_TIMESTAMP),
        ("ts-before-2000", event("click", ts=946_684_799_999), r.BAD_TIMESTAMP),
        ("ts-after-2200", event("click", ts=7_258_118_400_001), r.BAD_TIMESTAMP),
        ("ts-naive", event("click", ts="2026-11-28T10:00:00"), r.BAD_TIMESTAMP),
        ("ts-date-only", event("click", ts="2026-11-28"), r.BAD_TIMESTAMP),
        ("ts-no-seconds", event("click", ts="2026-11-28T10:00Z"), r.BAD_TIMESTAMP),
        ("ts-digits-string", event("click", ts=str(TS)), r.BAD_TIMESTAMP),
        ("ts-words", event("click", ts="yesterday"), r.BAD_TIMESTAMP),
        ("ts-bool", event("click", ts=True), r.BAD_TIMESTAMP),
        ("ts-1999", event("click", ts="1999-12-31T23:59:59Z"), r.BAD_TIMESTAMP),
        ("reserved-timestamp-garbage", event("click", timestamp="soon"), r.BAD_TIMESTAMP),
        (
            "identify-naive-timestamp",
            event("identify", timestamp="2026-11-28T10:00:00"),
            r.BAD_TIMESTAMP,
        ),
        ("amount-negative", event("purchase", {"amount": -0.01}), r.OUT_OF_RANGE),
    ]
    for t, (low, high) in SCORE_RANGE.items():
        cases.append((f"{t.value}-below", event(t.value, {"score": low - 1}), r.OUT_OF_RANGE))
        cases.append((f"{t.value}-above", event(t.value, {"score": high + 1}), r.OUT_OF_RANGE))
        cases.append((f"{t.value}-no-score", event(t.value, {}), r.SCHEMA))
    for t in EventType:
        if t.value.startswith("ticket_"):
            cases.append((f"{t.value}-no-ticket-id", event(t.value, {"page": "/"}), r.SCHEMA))
    return cases


INVALID = _invalid_cases()


@pytest.mark.parametrize(
    ("label", "body", "reason"), INVALID, ids=[label for label, _, _ in INVALID]
)
def test_rejected_events_fail_the_schema(label: str, body: Any, reason: Reason) -> None:
    out = decode(body)
    assert isinstance(out, Rejection), out
    assert out.reason == reason, out.detail
    type_ = body.get("type") if isinstance(body, dict) else None
    if isinstance(type_, str) and type_ in {t.value for t in EventType}:
        assert schema_errors(FAMILY_OF[EventType(type_)].value, body), "family schema accepted it"
    else:  # no family to pick: no schema may accept it
        for name in EVENT_SCHEMAS:
            assert schema_errors(name, body), f"{name} schema accepted it"


def test_invalid_cases_cover_every_expressible_reason() -> None:
    covered = {reason for _, _, reason in INVALID}
    assert covered == set(Reason) - NOT_EXPRESSIBLE


def test_what_no_schema_can_express() -> None:
    """The documented limits: these pass the schema but the decoder rejects them."""
    future = event("click", ts=NOW + 300_001)
    oversized = event("click", {"blob": "x" * 70_000})
    fraction = event("nps_response", {"score": 9.0})
    for body, reason in (
        (future, Reason.FUTURE_TIMESTAMP),
        (oversized, Reason.OVERSIZED),
        (fraction, Reason.SCHEMA),
    ):
        out = decode(body)
        assert isinstance(out, Rejection) and out.reason == reason, out
        assert schema_errors(FAMILY_OF[EventType(body["type"])].value, body) == []


#: Property values that exercise every per-type rule of the decoder.
PROBES: list[dict[str, Any]] = [
    {},
    {"amount": -0.01},
    {"amount": 0},
    {"amount": None},
    {"ticket_id": ""},
    {"ticket_id": "T"},
    {"score": None},
    *({"score": s} for s in range(-2, 13)),
    *({"ticket_id": "T", "author": a} for a in [*sorted(REPLY_AUTHORS), "alien", None]),
]


@pytest.mark.parametrize("event_type", [t.value for t in EventType])
def test_decoder_and_family_schema_agree_on_properties(event_type: str) -> None:
    """Catches drift of SCORE_RANGE, REPLY_AUTHORS or the per-type checks from the schemas."""
    schema = family_schema(event_type)
    for probe in PROBES:
        for props in (probe, {**REQUIRED_PROPS.get(event_type, {}), **probe}):
            body = event(event_type, props)
            accepted = isinstance(decode(body), Event)
            assert accepted == schema.is_valid(body), (props, decode(body))


# ---- (d) nothing drifts: types, families, reasons ---------------------------------------------


def _type_enum(name: str) -> set[str]:
    return set(_schema(name)["properties"]["type"]["enum"])


def test_every_event_type_is_in_its_family_schema_only() -> None:
    assert _type_enum("envelope") == {t.value for t in EventType}
    for family in Family:
        expected = {t.value for t, f in FAMILY_OF.items() if f == family}
        assert _type_enum(family.value) == expected, family
    assert set(FAMILY_OF) == set(EventType)


def test_dead_letter_reasons_are_the_reason_codes() -> None:
    assert set(_schema("dead-letter")["properties"]["reason"]["enum"]) == {r.value for r in Reason}


@pytest.mark.parametrize("reason", list(Reason))
def test_dead_letter_records_validate(reason: Reason) -> None:
    for original, detail in ((orjson.dumps(event("click")), "d" * 600), (b"", "")):
        rejected = Rejected(17, b"u-42", original, TS, reason, detail)
        record = orjson.loads(dlq_record("engagement.clickstream", 2, rejected))
        assert schema_errors("dead-letter", record) == []
        assert base64.b64decode(record["original_b64"]) == original


# ---- docs/events.md ---------------------------------------------------------------------------


def _doc() -> str:
    return EVENTS_DOC.read_text(encoding="utf-8")


def test_doc_has_a_row_per_type_reason_and_segment_mapping() -> None:
    doc = _doc()
    rows = [f"| `{t.value}` |" for t in EventType]
    rows += [f"| `{r.value}` |" for r in Reason]
    rows += [f"| `{name}` | `{type_}` |" for name, type_ in _default_segment_map().items()]
    assert [row for row in rows if row not in doc] == []


def _doc_examples() -> list[Any]:
    blocks = re.findall(r"```json\n(.*?)```", _doc(), flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_doc_examples_are_what_they_claim() -> None:
    examples = _doc_examples()
    assert len(examples) >= 8
    kinds: set[str] = set()
    for example in examples:
        if "original_b64" in example:  # a dead-letter record
            kinds.add("dead-letter")
            assert schema_errors("dead-letter", example) == []
            out = DECODER.decode(base64.b64decode(example["original_b64"]), NOW)
            assert isinstance(out, Rejection) and out.reason == example["reason"], out
            assert out.detail == example["detail"]
            continue
        out = decode(example)
        assert isinstance(out, Event), (example, out)
        if example["type"] in {"page", "screen", "track"} or "messageId" in example:
            kinds.add("segment")
            continue
        family = FAMILY_OF[EventType(example["type"])].value
        kinds.add(family)
        assert schema_errors(family, example) == [], example
    assert kinds == {*(f.value for f in Family), "segment", "dead-letter"}
