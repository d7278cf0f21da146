"""The compiled hot-path cores against their Python sources, and how a process picks a build.

``session_core.py``, ``score/summary_core.py``, ``engine/dedupe_core.py`` and
``engine/fold_core.py`` are the only sources; ``setup.py`` compiles each (typed by its
``*_compiled.pxd``) into ``*_compiled``. C integer fields and typed locals are where a compiled
build could part from its source (overflow, bool arithmetic, floor division, a tuple subclass),
so random inputs go through both and every result must agree: for the sessionizer, random
streams batch by batch, each keeping its own stored string as Redis would (stored value, due
time and closed sessions at every step); for the scores, random touches of a customer (their
summary, and whether they need the stored state read) and random bucket counts packed and
unpacked; for the duplicate window, random logs of ids; for the fold, random records of every
kind folded in random slices.

Set ``STREAM_REQUIRE_COMPILED=1`` (the README's test command does) to fail instead of skipping
when a compiled build is missing or stale.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context
from stream.contract.types import EventType
from stream.engine import compiled, dedupe
from stream.engine import dedupe_core as dedupe_source
from stream.engine import fold as fold_module
from stream.engine import fold_core as fold_source
from stream.engine.windows import Windows
from stream.metrics import session_core as source
from stream.metrics import sessions
from stream.metrics.score import state as score_state
from stream.metrics.score import summary_core as summary_source
from stream.metrics.score.touch import ScoreTouch

REQUIRED = os.environ.get("STREAM_REQUIRE_COMPILED") == "1"


def _compiled_core(of: ModuleType = source) -> ModuleType:
    module = compiled.load(of)
    if module is of:
        reason = f"{of.__name__} has no current build (deploy/local/run.sh setup)"
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    return module


def test_the_process_runs_the_compiled_cores_when_they_are_built() -> None:
    if not REQUIRED:
        pytest.skip("STREAM_REQUIRE_COMPILED is not set")
    assert sessions.CORE == "compiled"
    assert sessions.core.__name__ == "stream.metrics.session_core_compiled"
    assert type(sessions.unpack("1,0,1,0,web,paid")[0]).__module__ == sessions.core.__name__
    assert score_state.summary_core.__name__ == "stream.metrics.score.summary_core_compiled"
    assert compiled.CORES["stream.metrics.session_core"] is True
    assert compiled.CORES["stream.metrics.score.summary_core"] is True
    assert dedupe.CORE == "compiled" and compiled.CORES["stream.engine.dedupe_core"] is True
    assert fold_module.fold_records.__module__ == "stream.engine.fold_core_compiled"
    assert compiled.CORES["stream.engine.fold_core"] is True


MIN = 60_000
TIMEOUT, CAP = 30 * MIN, 3 * 60 * MIN  # a short cap, so that it cuts often

hits_st = st.tuples(
    st.integers(0, 12 * 60).map(lambda m: m * MIN // 2),  # 0..6 h on a 30-s grid
    st.booleans(),
    st.booleans(),
    st.sampled_from(["web", "ios", "we,b;%"]),  # a label that needs escaping
    st.sampled_from(["paid", "organic"]),
)


def _fields(s: source.Session) -> tuple[int, int, int, int, str, str]:
    return (s.first, s.last, s.page_views, s.conversions, s.platform, s.channel)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(hits_st, max_size=8), min_size=1, max_size=8), st.data())
def test_compiled_core_settles_as_the_source_does(
    batches: list[list[tuple[int, bool, bool, str, str]]], data: st.DataObject
) -> None:
    built = _compiled_core()
    stored: dict[ModuleType, str | None] = {source: None, built: None}
    watermark = -1
    for batch in batches:
        watermark = max(watermark, data.draw(st.integers(-1, 8 * 60)) * MIN)
        results = {}
        for module in (source, built):
            value, due, closed = module.settle_field(
                stored[module], list(batch), watermark, TIMEOUT, CAP
            )
            stored[module] = value
            results[module] = (value, due, [_fields(s) for s in closed])
        assert results[built] == results[source]


def test_compiled_sessions_pack_and_compare_like_the_source() -> None:
    built = _compiled_core()
    text = "5,10,2,1,we%2Cb,paid;100,0,0,0,ios,organic"
    a, b = source.unpack(text), built.unpack(text)
    assert source.pack(a) == built.pack(b) == text
    assert built.unpack(text.encode()) == b and built.unpack(None) == []
    assert [s.duration_ms for s in b] == [10, 0]
    assert b[0] != b[1] and b[0] == built.unpack(text)[0]


DAY = 86_400_000


def _touch(event_id: str, kind: str, ts: int, user: str, channel: str | None) -> ScoreTouch:
    return ScoreTouch(event_id, kind, ts, user, channel, None, None, None, None)


touch_st = st.tuples(
    st.sampled_from(["page_view", "feature_used", "like"]),
    st.integers(0, 5 * DAY) | st.integers(2**40, 2**41),  # small, and today's epoch ms
    st.sampled_from([None, "organic", "paid", ""]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(touch_st, min_size=1, max_size=12), st.sampled_from([60_000, DAY, 7 * DAY]))
def test_compiled_summary_is_the_sources(
    touches: list[tuple[str, int, str | None]], bucket_ms: int
) -> None:
    built = _compiled_core(summary_source)
    index = {"page_view": [0, 2], "feature_used": [1], "like": [2]}
    events = [
        _touch(f"e{j}", kind, ts, "u1", channel) for j, (kind, ts, channel) in enumerate(touches)
    ]
    channels = frozenset({"organic", ""})
    expected = summary_source.summary(events, index, bucket_ms, 3, channels)
    assert built.summary(events, index, bucket_ms, 3, channels) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(touch_st, min_size=1, max_size=4), min_size=1, max_size=6),
    st.sets(st.integers(0, 5)),
    st.sampled_from([60_000, DAY]),
)
def test_compiled_pending_entries_are_the_sources(
    customers: list[list[tuple[str, int, str | None]]], read: set[int], bucket_ms: int
) -> None:
    built = _compiled_core(summary_source)
    index = {"page_view": [0, 2], "feature_used": [1], "like": [2]}
    channels = frozenset({"organic", ""})
    items = {
        f"c{n}": [_touch("e", k, ts, f"u{n}", ch) for k, ts, ch in touches]
        for n, touches in enumerate(customers)
    }
    stored = {f"c{n}": None for n in read}
    expected = summary_source.pending_entries(items, stored, index, bucket_ms, 3, channels)
    assert built.pending_entries(items, stored, index, bucket_ms, 3, channels) == expected
    # each customer not read: field, due at its earliest bucket's end, then its summary record
    entries: list[object] = []
    for name, events in items.items():
        if name not in stored:
            rec, first = summary_source.summary(events, index, bucket_ms, 3, channels)
            entries += [name, (first + 1) * bucket_ms, *rec[:4], (len(rec) - 4) // 3, *rec[4:]]
    assert expected == (entries, sum(name not in stored for name in items))


buckets_st = st.dictionaries(
    st.integers(-3, 40) | st.integers(20_000, 20_060),  # day buckets, and some far apart
    st.lists(st.integers(0, 70), min_size=3, max_size=3),  # counts past the 62 digits too
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(buckets_st, st.integers(-1, 30), st.integers(1, 3))
def test_compiled_bucket_codec_is_the_sources(
    buckets: dict[int, list[int]], evaluated: int, n_activities: int
) -> None:
    built = _compiled_core(summary_source)
    runs = summary_source.bucket_runs(buckets, evaluated)
    assert built.bucket_runs(buckets, evaluated) == runs
    back = summary_source.bucket_counts(runs, evaluated, n_activities)
    assert built.bucket_counts(runs, evaluated, n_activities) == back
    # the round trip keeps every nonzero count of the activities still configured
    kept = {k: c[:n_activities] for k, c in buckets.items() if any(c[:n_activities])}
    assert {k: c[:n_activities] for k, c in back.items()} == kept


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(touch_st, min_size=1, max_size=4), min_size=1, max_size=6),
    st.integers(0, 6 * DAY),
)
def test_compiled_reads_are_the_sources(
    customers: list[list[tuple[str, int, str | None]]], edge: int
) -> None:
    built = _compiled_core(summary_source)
    items = {
        f"c{n}": [_touch("e", k, ts, f"u{n}", None) for k, ts, _ in touches]
        for n, touches in enumerate(customers)
    }
    additive = frozenset({"page_view", "like"})
    expected = summary_source.to_read(items, edge, additive)
    assert built.to_read(items, edge, additive) == expected
    assert expected == [
        name
        for name, events in items.items()
        if any(e.ts_ms < edge or e.type not in additive for e in events)
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.sampled_from("abcdefghij")), max_size=300),
    st.integers(0, 40),
)
def test_compiled_duplicate_window_is_the_sources(log: list[tuple[int, str]], size: int) -> None:
    """Offsets with gaps (records that carried no event) and ids that come back, through small
    tables that expire ids and are rebuilt many times."""
    built = _compiled_core(dedupe_source)
    ours, theirs = built.PartitionWindow(size), dedupe_source.PartitionWindow(size)
    offset = 0
    for step, ident in log:
        offset += step
        assert ours.admit(offset, ident) == theirs.admit(offset, ident)
    assert len(ours) == len(theirs) and ours.capacity == theirs.capacity


class _Record:
    """A Kafka record as the fold reads it (aiokafka's C records have these attributes)."""

    def __init__(self, offset: int, value: bytes | None, headers: list[Any]) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers = headers


FOLD_SETTINGS = Settings(_env_file=None, allowed_lateness_seconds=600)  # type: ignore[call-arg]
FOLD_CTX = build_fold_context(FOLD_SETTINGS, Windows(FOLD_SETTINGS.zone))
FOLD_KINDS = [t.value for t in EventType]
FOLD_NOW = 1_800_000_000_000

record_st = st.one_of(
    st.tuples(  # an event: type, id (few: duplicates), user, seconds before now, author, props
        st.sampled_from(FOLD_KINDS),
        st.integers(0, 30),
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(-60, 4000),
        st.sampled_from([None, "agent", "requester"]),
        st.sampled_from([{}, {"ticket_id": "t1"}, {"score": 4, "ticket_id": "t2"}]),
    ),
    st.sampled_from([None, b"", b"{", b"[1]", b'{"type":"click"}']),  # tombstone, bad input
    st.tuples(
        st.integers(0, 40), st.sampled_from([b"social.1:0", b"social.1:x"])
    ),  # relayed (or bad)
)


def _fold_records(drawn: list[Any]) -> list[_Record]:
    records = []
    for offset, item in enumerate(drawn):
        if item is None or isinstance(item, bytes):
            records.append(_Record(offset, item, []))
            continue
        if len(item) == 2:
            seq, header = item
            body = {"event_id": f"r{seq}", "type": "like", "ts": FOLD_NOW - 1000, "user_id": "u1"}
            lane = header.replace(b":0", b":%d" % seq)
            records.append(_Record(offset, orjson.dumps(body), [("es-relay", lane)]))
            continue
        kind, ident, user, ago, author, props = item
        props = {**props, "page": "/", "campaign": "c", "placement": "p", "platform": "web"}
        if author is not None:
            props["author"] = author
        body = {"event_id": f"e{ident}", "type": kind, "ts": FOLD_NOW - ago * 1000,
                "user_id": user, "session_id": "s", "properties": props}  # fmt: skip
        records.append(_Record(offset, orjson.dumps(body), []))
    return records


def _folded(core: ModuleType, records: list[_Record], cuts: list[int]) -> list[Any]:
    """Fold ``records`` in slices (a continued result, as the engine does); what came out."""
    window = dedupe.PartitionWindow(16)
    result = None
    start = 0
    for cut in [*sorted(set(cuts)), len(records)]:
        if not start < cut <= len(records):
            continue
        result = core.fold_records(
            records[start:cut], FOLD_CTX, FOLD_NOW - 3_000_000, FOLD_NOW, result, window, 2,
            {"social.1": 0},
        )  # fmt: skip
        start = cut
    if result is None:
        return [None]
    deltas = result.deltas
    return [
        (result.first_offset, result.last_offset, result.max_ts, result.accepted),
        result.rejected,
        result.lag_sample_ts,
        result.relay_hw,
        result.relayed,
        *(getattr(deltas, name) for name in deltas.__slots__),
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(record_st, min_size=1, max_size=60), st.lists(st.integers(1, 59), max_size=4))
def test_compiled_fold_is_the_sources(drawn: list[Any], cuts: list[int]) -> None:
    """Every kind of record (events of every type, late, duplicate, bad, tombstones, relayed,
    warm-up records before offset 2), folded in random slices: the same result."""
    built = _compiled_core(fold_source)
    records = _fold_records(drawn)
    assert _folded(built, records, cuts) == _folded(fold_source, records, cuts)


def test_a_run_character_stands_for_its_index_in_the_digits() -> None:
    built = _compiled_core(summary_source)
    for i, ch in enumerate(summary_source.DIGITS):
        assert summary_source.digit_value(ch) == built.digit_value(ch) == i


# ---- which build a process loads ---------------------------------------------------------


def _package(tmp_path: Path, name: str, compiled_text: str | None, pxd: bool = True) -> ModuleType:
    """A throw-away package with a source module and, optionally, a stand-in compiled build
    (and without the .pxd: installed from a wheel, not a source tree)."""
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text("BUILD = 'source'\n")
    if pxd:
        (pkg / "core_compiled.pxd").write_text("# types\n")
    if compiled_text is not None:
        (pkg / "core_compiled.py").write_text(compiled_text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{name}.core")
    finally:
        sys.path.remove(str(tmp_path))


def _load(tmp_path: Path, module: ModuleType) -> ModuleType:
    sys.path.insert(0, str(tmp_path))
    try:
        return compiled.load(module)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_current_build_is_loaded(tmp_path: Path) -> None:
    module = _package(tmp_path, "pkg_current", "BUILD = 'compiled'\n")
    stamp = os.path.getmtime(module.__file__ or "")
    os.utime(tmp_path / "pkg_current" / "core_compiled.py", (stamp + 5, stamp + 5))
    assert _load(tmp_path, module).BUILD == "compiled"
    assert compiled.CORES["pkg_current.core"] is True


def test_a_build_older_than_its_source_or_pxd_is_not_loaded(tmp_path: Path) -> None:
    module = _package(tmp_path, "pkg_stale", "BUILD = 'compiled'\n")
    stamp = os.path.getmtime(module.__file__ or "")
    os.utime(tmp_path / "pkg_stale" / "core_compiled.py", (stamp + 5, stamp + 5))
    os.utime(tmp_path / "pkg_stale" / "core_compiled.pxd", (stamp + 10, stamp + 10))
    assert _load(tmp_path, module).BUILD == "source"
    assert compiled.CORES["pkg_stale.core"] is False


def test_an_installed_build_is_loaded_whatever_the_install_times(tmp_path: Path) -> None:
    module = _package(tmp_path, "pkg_wheel", "BUILD = 'compiled'\n", pxd=False)
    stamp = os.path.getmtime(module.__file__ or "")
    os.utime(tmp_path / "pkg_wheel" / "core_compiled.py", (stamp - 5, stamp - 5))
    assert _load(tmp_path, module).BUILD == "compiled"


def test_no_build_runs_the_source(tmp_path: Path) -> None:
    module = _package(tmp_path, "pkg_none", None)
    assert _load(tmp_path, module) is module
    assert compiled.CORES["pkg_none.core"] is False
