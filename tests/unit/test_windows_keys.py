"""Window cutting in a time zone (DST, half-hour offsets) and injective key escaping."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.engine.keys import FIELD_SEP, Keys, escape, field, unescape
from stream.engine.placement import Placement
from stream.engine.windows import Windows


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_utc_windows() -> None:
    w = Windows(ZoneInfo("UTC"))
    t = ts("2026-03-10T13:47:12+00:00")
    assert w.start_of("minute", t) == ts("2026-03-10T13:47:00+00:00")
    assert w.start_of("hour", t) == ts("2026-03-10T13:00:00+00:00")
    assert w.start_of("day", t) == ts("2026-03-10T00:00:00+00:00")


def test_half_hour_offset_cuts_hours_locally() -> None:
    w = Windows(ZoneInfo("Asia/Kolkata"))
    t = ts("2026-03-10T13:47:12+05:30")
    assert w.start_of("hour", t) == ts("2026-03-10T13:00:00+05:30")
    assert w.start_of("day", t) == ts("2026-03-10T00:00:00+05:30")


def test_dst_days_have_23_and_25_hours() -> None:
    w = Windows(ZoneInfo("Europe/Berlin"))
    spring = w.start_of("day", ts("2026-03-29T12:00:00+02:00"))
    fall = w.start_of("day", ts("2026-10-25T12:00:00+01:00"))
    assert w.end_of("day", spring) - spring == 23 * 3600
    assert w.end_of("day", fall) - fall == 25 * 3600
    assert len(list(w.iter_starts("hour", fall, w.end_of("day", fall)))) == 25


def test_repeated_fall_back_hour_is_two_windows() -> None:
    w = Windows(ZoneInfo("Europe/Berlin"))
    first = w.start_of("hour", ts("2026-10-25T02:30:00+02:00"))
    second = w.start_of("hour", ts("2026-10-25T02:30:00+01:00"))
    assert second - first == 3600


def test_event_on_both_sides_of_local_midnight() -> None:
    w = Windows(ZoneInfo("America/New_York"))
    before = w.start_of("day", ts("2026-06-01T23:59:59-04:00"))
    after = w.start_of("day", ts("2026-06-02T00:00:01-04:00"))
    assert after - before == 86400


def test_previous_days_cross_dst() -> None:
    w = Windows(ZoneInfo("Europe/Berlin"))
    day = w.start_of("day", ts("2026-03-30T12:00:00+02:00"))
    days = w.previous_days(day, 3)
    assert days[0] == day and days[1] == day - 23 * 3600 and days[2] == day - 23 * 3600 - 86400


@given(st.text(max_size=50), st.text(max_size=50))
def test_escape_is_injective_and_delimiter_free(a: str, b: str) -> None:
    ea, eb = escape(a), escape(b)
    assert unescape(ea) == a
    assert (ea == eb) == (a == b)
    for forbidden in (":", "{", "}", FIELD_SEP, " ", "\n"):
        assert forbidden not in ea


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_fields_of_different_parts_never_collide(a: str, b: str, c: str, d: str) -> None:
    if (a, b) != (c, d):
        assert field("imp", escape(a), escape(b)) != field("imp", escape(c), escape(d))


@pytest.mark.parametrize(
    ("placement", "tag"),
    [(Placement.PARTITION, "{clickstream.3}"), (Placement.SPREAD, "{clickstream.3.")],
)
def test_keys_carry_one_hash_tag_per_shard(placement: Placement, tag: str) -> None:
    k = Keys("es", placement)
    shard = k.shard("clickstream", 3)
    assert shard == "clickstream.3"  # the shard's name does not depend on the placement
    for key in (k.state(shard), k.counters(shard, "m", 60), k.users(shard, "d", 0, "active")):
        assert key.count("{") == 1 and tag in key and key.startswith("es:")
