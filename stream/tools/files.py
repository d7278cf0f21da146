"""Read event files (JSONL, or CSV with a column -> field mapping) as raw JSON messages.

Messages come out as bytes exactly as they will be published, so ``stream check`` validates
the same bytes ``stream replay`` sends.

CSV cells are text, but the contract has numbers and a boolean (``properties.public``), so a
mapping entry can name the JSON type of its field: ``field[:type]=column`` with ``str``, ``int``,
``float`` or ``bool``. Without a type, the contract's own non-string fields get theirs
(:data:`DEFAULT_TYPES`) and everything else stays a string. A cell that does not parse as its
type is passed on as the text it is: the decoder then rejects the message with a reason, so the
tools never fix up or drop input silently.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ColumnMap",
    "count_messages",
    "csv_messages",
    "is_csv",
    "iter_messages",
    "parse_mapping",
]

_PROPERTIES = "properties."


def _as_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _as_float(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    # JSON has no NaN/inf (orjson would write null, i.e. "absent"): keep the text, get a reason.
    return value if math.isfinite(value) else text


_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _as_bool(text: str) -> Any:
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return text


def _as_str(text: str) -> Any:
    return text


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": _as_str,
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
}

#: The type a field gets when its mapping entry names none: the contract's non-string fields.
DEFAULT_TYPES: dict[str, Callable[[str], Any]] = {
    "ts": _as_int,  # epoch ms; an RFC 3339 string does not parse, so it stays one
    "timestamp": _as_int,
    "properties.score": _as_int,
    "properties.amount": _as_float,
    "properties.public": _as_bool,
}


@dataclass(frozen=True)
class ColumnMap:
    """One ``--map`` entry: CSV ``column`` becomes ``field`` (``properties.x`` for a property)."""

    field: str
    column: str
    type: str | None = None  # a CONVERTERS name; None: DEFAULT_TYPES or str

    def converter(self) -> Callable[[str], Any]:
        if self.type is not None:
            return CONVERTERS[self.type]
        return DEFAULT_TYPES.get(self.field, _as_str)


def parse_mapping(spec: str) -> list[ColumnMap]:
    """``"ts=time,user_id=uid,properties.page=url,properties.public:bool=pub"`` -> entries."""
    entries: list[ColumnMap] = []
    seen: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        target, sep, column = part.partition("=")
        field, colon, type_name = target.strip().partition(":")
        field, type_name, column = field.strip(), type_name.strip(), column.strip()
        if not sep or not field or not column or (colon and not type_name):
            raise ValueError(f"bad mapping entry {part!r}; expected field[:type]=column")
        if colon and type_name not in CONVERTERS:
            raise ValueError(
                f"bad type {type_name!r} in {part!r}; expected one of {', '.join(CONVERTERS)}"
            )
        if field in seen:
            raise ValueError(f"field {field!r} is mapped twice")
        if field.startswith(_PROPERTIES) and len(field) == len(_PROPERTIES):
            raise ValueError(f"bad mapping entry {part!r}: no property name after 'properties.'")
        seen.add(field)
        entries.append(ColumnMap(field, column, type_name or None))
    if not entries:
        raise ValueError("empty mapping; expected field[:type]=column,...")
    return entries


# (cell index, top-level key, property key or None, converter or None for text), compiled once
# per file.
_Plan = list[tuple[int, str, str | None, Callable[[str], Any] | None]]


def _compile(header: Sequence[str], mapping: Sequence[ColumnMap]) -> _Plan:
    index = {name: i for i, name in enumerate(header)}
    plan: _Plan = []
    for entry in mapping:
        if entry.column not in index:
            raise ValueError(
                f"column {entry.column!r} (for {entry.field}) is not in the CSV header: "
                + ", ".join(header)
            )
        if entry.field.startswith(_PROPERTIES):
            key, prop = "properties", entry.field[len(_PROPERTIES) :]
        else:
            key, prop = entry.field, None
        convert = entry.converter()
        plan.append((index[entry.column], key, prop, None if convert is _as_str else convert))
    return plan


def _rows_to_events(rows: Iterator[list[str]], plan: _Plan) -> Iterator[bytes]:
    """The per-row loop, kept flat: it is most of a CSV replay's time."""
    dumps = orjson.dumps
    for row in rows:
        if not row:
            continue  # a blank line
        width = len(row)
        event: dict[str, Any] = {}
        props: dict[str, Any] | None = None
        for i, key, prop, convert in plan:
            text = row[i] if i < width else ""
            if not text:
                continue  # empty cell: absent, like null
            value = text if convert is None else convert(text)
            if prop is None:
                event[key] = value
            else:
                if props is None:
                    props = event["properties"] = {}
                props[prop] = value
        yield dumps(event)


def csv_messages(lines: Iterator[str], mapping: Sequence[ColumnMap]) -> Iterator[bytes]:
    """Messages from CSV text lines (the first is the header), one per non-blank row. The header
    is read and checked against the mapping at once, before the first message is asked for."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return iter(())
    return _rows_to_events(reader, _compile(header, mapping))


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def iter_messages(path: Path, csv_mapping: Sequence[ColumnMap] | None = None) -> Iterator[bytes]:
    """One message per event, in file order; blank lines are skipped. A CSV's header is checked
    here (ValueError), so a wrong mapping fails before anything is published."""
    if not is_csv(path):
        return _jsonl_messages(path)
    if not csv_mapping:
        raise ValueError("CSV input needs a column mapping (--map field=column,...)")
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    handle = path.open(newline="", encoding="utf-8-sig")
    try:
        messages = csv_messages(handle, csv_mapping)
    except BaseException:
        handle.close()
        raise
    return _closing(messages, handle)


def _closing(messages: Iterator[bytes], handle: io.TextIOBase) -> Iterator[bytes]:
    with handle:
        yield from messages


def _jsonl_messages(path: Path) -> Iterator[bytes]:
    with path.open("rb") as raw:
        for line in io.BufferedReader(raw, buffer_size=1 << 20):
            line = line.strip()
            if line:
                yield line


def count_lines(path: Path) -> int:
    """Lines in the file (a last line without a newline counts), for a progress bar's total."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        for buf in iter(lambda: handle.read(1 << 20), b""):
            lines += buf.count(b"\n")
            last = buf[-1:]
    return lines + (last != b"\n")


def count_messages(path: Path) -> int:
    """About how many messages :func:`iter_messages` yields: lines, less a CSV's header (blank
    lines and newlines inside quoted CSV cells make it an upper bound)."""
    lines = count_lines(path)
    return max(lines - 1, 0) if is_csv(path) else lines
