"""Event files: the --map syntax, typed CSV columns, and the bytes check/replay would send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.config.settings import _default_segment_map
from stream.contract.decode import Decoder, Event, Rejection
from stream.contract.types import Reason
from stream.tools.files import (
    ColumnMap,
    count_messages,
    csv_messages,
    iter_messages,
    parse_mapping,
)

NOW = 1_767_225_600_000
DECODER = Decoder(
    max_message_bytes=65536, max_future_skew_ms=0, segment_event_map=_default_segment_map()
)
BASE = "event_id=id,type=kind,ts=time,user_id=uid"


def rows(mapping: str, *lines: str) -> list[dict[str, Any]]:
    return [orjson.loads(m) for m in csv_messages(iter(lines), parse_mapping(mapping))]


def test_parse_mapping_with_types() -> None:
    assert parse_mapping(" ts=time , properties.public:bool=pub,properties.x:float = y ") == [
        ColumnMap("ts", "time"),
        ColumnMap("properties.public", "pub", "bool"),
        ColumnMap("properties.x", "y", "float"),
    ]


@pytest.mark.parametrize(
    "spec",
    ["ts", "=time", "ts=", "ts:=time", "ts:date=time", "ts=a,ts=b", "properties.=x", " , "],
)
def test_parse_mapping_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_mapping(spec)


def test_contract_types_by_default() -> None:
    (event,) = rows(
        f"{BASE},properties.public=pub,properties.score=score,properties.amount=amt,"
        "properties.page=page",
        "id,kind,time,uid,pub,score,amt,page",
        "e1,ticket_replied,1767225599000,u1,TRUE,9,19.5,007",
    )
    assert event == {
        "event_id": "e1",
        "type": "ticket_replied",
        "ts": 1767225599000,
        "user_id": "u1",
        "properties": {"public": True, "score": 9, "amount": 19.5, "page": "007"},
    }


@pytest.mark.parametrize(
    ("type_", "cell", "value"),
    [
        ("bool", "true", True),
        ("bool", "False", False),
        ("bool", "yes", True),
        ("bool", "n", False),
        ("bool", "1", True),
        ("bool", "0", False),
        ("bool", "maybe", "maybe"),  # unparseable: kept, the decoder rejects it
        ("int", "42", 42),
        ("int", "4.2", "4.2"),
        ("float", "4.5", 4.5),
        ("float", "7", 7.0),
        ("float", "nan", "nan"),  # JSON has no NaN; never turned into null
        ("str", "true", "true"),
    ],
)
def test_typed_columns(type_: str, cell: str, value: object) -> None:
    (event,) = rows(f"{BASE},properties.extra:{type_}=x", "id,kind,time,uid,x", f"e,t,1,u,{cell}")
    assert event["properties"]["extra"] == value
    assert type(event["properties"]["extra"]) is type(value)


def test_empty_cells_are_absent_and_rfc3339_ts_stays_text() -> None:
    (event,) = rows(
        f"{BASE},properties.public=pub,session_id=sid",
        "id,kind,time,uid,pub,sid",
        "e1,page_view,2026-01-01T00:00:00Z,u1,,",
    )
    assert event == {
        "event_id": "e1",
        "type": "page_view",
        "ts": "2026-01-01T00:00:00Z",
        "user_id": "u1",
    }


def test_bool_column_is_accepted_by_the_decoder_and_a_str_one_is_not() -> None:
    header = "id,kind,time,uid,ticket,author,pub"
    line = "e1,ticket_replied,1767225599000,u1,T-1,agent,true"
    mapping = f"{BASE},properties.ticket_id=ticket,properties.author=author"
    typed = csv_messages(iter([header, line]), parse_mapping(f"{mapping},properties.public=pub"))
    decoded = DECODER.decode(next(typed), NOW)
    assert isinstance(decoded, Event) and decoded.props.public is True
    text = csv_messages(iter([header, line]), parse_mapping(f"{mapping},properties.public:str=pub"))
    rejected = DECODER.decode(next(text), NOW)
    assert isinstance(rejected, Rejection) and rejected.reason == Reason.SCHEMA


def test_missing_column_fails_before_the_first_message(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id,kind\ne1,page_view\n")
    with pytest.raises(ValueError, match="'uid'"):
        iter_messages(path, parse_mapping("event_id=id,user_id=uid"))


def test_csv_file_with_bom_blank_and_short_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.CSV"
    path.write_bytes("\ufeffid,kind,uid\ne1,page_view,u1\n\ne2,click\n".encode())
    got = [orjson.loads(m) for m in iter_messages(path, parse_mapping("event_id=id,type=kind"))]
    assert got == [{"event_id": "e1", "type": "page_view"}, {"event_id": "e2", "type": "click"}]
    assert count_messages(path) == 3  # an upper bound: the blank line counts


def test_jsonl_is_sent_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  {"b":2}  \n{"c":3}')  # no final newline
    assert list(iter_messages(path)) == [b'{"a": 1}', b'{"b":2}', b'{"c":3}']
    assert count_messages(path) == 4


def test_csv_needs_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id\n")
    with pytest.raises(ValueError, match="mapping"):
        iter_messages(path)
