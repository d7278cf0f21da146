"""``stream check FILE``: counts per type and per rejection reason, for JSONL and for CSV."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from stream.cli import cli


def _now() -> int:
    return int(time.time() * 1000)


def _jsonl(tmp_path: Path) -> Path:
    ts = _now() - 60_000
    lines = [
        {"event_id": "e1", "type": "page_view", "ts": ts, "user_id": "u1"},
        {"event_id": "e2", "type": "page_view", "ts": ts, "user_id": "u2"},
        {"event_id": "e3", "type": "nps_response", "ts": ts, "user_id": "u1",
         "properties": {"score": 9}},
        {"event_id": "e4", "type": "nps_response", "ts": ts, "user_id": "u1",
         "properties": {"score": 11}},
        {"event_id": "e5", "type": "warp_drive", "ts": ts, "user_id": "u1"},
        {"event_id": "e6", "type": "click", "ts": ts},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*map(orjson.dumps, lines), b"{not json"]) + b"\n")
    return path


def _csv(tmp_path: Path) -> Path:
    ts = _now() - 60_000
    path = tmp_path / "events.csv"
    path.write_text(
        "id,kind,time,uid,ticket,author,pub\n"
        f"e1,ticket_replied,{ts},u1,T-1,agent,true\n"
        f"e2,ticket_replied,{ts},u1,T-1,requester,no\n"
        f"e3,ticket_replied,{ts},u1,T-1,alien,yes\n"  # author not allowed
        f"e4,ticket_created,{ts},u1,,,\n"  # no ticket_id
        f"e5,page_view,1700000000,u1,,,\n"  # epoch seconds
        f"e6,page_view,{ts},,,,\n"
    )
    return path


CSV_MAP = (
    "event_id=id,type=kind,ts=time,user_id=uid,properties.ticket_id=ticket,"
    "properties.author=author,properties.public:bool=pub"
)


@pytest.mark.parametrize(
    ("make", "args", "valid", "rejected"),
    [
        (
            _jsonl,
            [],
            {"page_view": 2, "nps_response": 1},
            {"out_of_range": 1, "unknown_type": 1, "missing_user_id": 1, "not_json": 1},
        ),
        (
            _csv,
            ["--map", CSV_MAP],
            {"ticket_replied": 2},
            {"schema": 2, "bad_timestamp": 1, "missing_user_id": 1},
        ),
    ],
)
def test_counts_per_type_and_reason(
    tmp_path: Path,
    make: object,
    args: list[str],
    valid: dict[str, int],
    rejected: dict[str, int],
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    runner = CliRunner()
    as_json = runner.invoke(cli, ["check", str(path), *args, "--json"])
    assert as_json.exit_code == 1, as_json.output  # 1: something was rejected
    assert orjson.loads(as_json.output) == {"valid": valid, "rejected": rejected}
    table = runner.invoke(cli, ["check", str(path), *args])
    assert table.exit_code == 1
    for name, n in [*valid.items(), *rejected.items()]:
        assert any(name in line and f" {n} " in line for line in table.output.splitlines()), name
    assert "total valid" in table.output


def test_clean_file_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(orjson.dumps({"event_id": "e", "type": "like", "ts": _now(), "user_id": "u"}))
    result = CliRunner().invoke(cli, ["check", str(path), "--json"])
    assert result.exit_code == 0
    assert orjson.loads(result.output) == {"valid": {"like": 1}, "rejected": {}}


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("e.csv", [], "needs a column mapping"),
        ("e.csv", ["--map", "event_id=nope"], "'nope'"),
        ("e.csv", ["--map", "event_id:date=id"], "bad type"),
        ("e.jsonl", ["--map", "event_id=id"], "only for .csv"),
    ],
)
def test_usage_errors(tmp_path: Path, name: str, args: list[str], message: str) -> None:
    path = tmp_path / name
    path.write_text("id\n")
    result = CliRunner().invoke(cli, ["check", str(path), *args])
    assert result.exit_code == 2
    assert message in result.output
