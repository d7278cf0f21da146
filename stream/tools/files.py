"""Read event files (JSONL, or CSV with a column -> field mapping) as raw JSON messages.

Messages come out as bytes exactly as they will be published, so ``stream check`` validates
the same bytes ``stream replay`` sends.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

# Properties that are numbers in the contract; CSV cells are text.
_INT_PROPS = frozenset({"score"})
_FLOAT_PROPS = frozenset({"amount"})


def parse_mapping(spec: str) -> dict[str, str]:
    """``"ts=time,user_id=uid,properties.page=url"`` -> {field: column}."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        target, sep, column = part.partition("=")
        if not sep or not target or not column:
            raise ValueError(f"bad mapping entry {part!r}; expected field=column")
        mapping[target.strip()] = column.strip()
    return mapping


def _convert(field: str, text: str) -> Any:
    name = field.rsplit(".", 1)[-1]
    if name == "ts" and text.lstrip("-").isdigit():
        return int(text)
    try:
        if name in _INT_PROPS:
            return int(text)
        if name in _FLOAT_PROPS:
            return float(text)
    except ValueError:
        return text  # leave it to the decoder to reject with a reason
    return text


def csv_row_to_event(row: Mapping[str, str], mapping: Mapping[str, str]) -> bytes:
    event: dict[str, Any] = {}
    for target, column in mapping.items():
        text = row.get(column)
        if text is None or text == "":
            continue
        value = _convert(target, text)
        if target.startswith("properties."):
            event.setdefault("properties", {})[target.split(".", 1)[1]] = value
        else:
            event[target] = value
    return orjson.dumps(event)


def iter_messages(path: Path, csv_mapping: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """Yield one message per event, in file order. Blank lines are skipped."""
    if path.suffix.lower() == ".csv":
        if not csv_mapping:
            raise ValueError("CSV input needs a column mapping (--map field=column,...)")
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield csv_row_to_event(row, csv_mapping)
        return
    with path.open("rb") as raw:
        for line in io.BufferedReader(raw, buffer_size=1 << 20):
            line = line.strip()
            if line:
                yield line


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(buf.count(b"\n") for buf in iter(lambda: handle.read(1 << 20), b""))
