"""Calendar periods (week, month, quarter): cut in the zone like the batch reference cuts them,
and tiled exactly by their local days, across DST changes and year ends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.windows import CALENDAR_GRANULARITIES, WEEKDAYS, Windows
from tests.support.families_reference import window_end, window_start

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")
instants = st.integers(
    int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()),
    int(datetime(2030, 12, 31, tzinfo=UTC).timestamp()),
)


@settings(max_examples=400, deadline=None)
@given(
    ts=instants,
    zone=st.sampled_from(ZONES),
    granularity=st.sampled_from(CALENDAR_GRANULARITIES),
    week_start=st.sampled_from(WEEKDAYS),
)
def test_periods_are_cut_as_the_reference_cuts_them(
    ts: int, zone: str, granularity: str, week_start: str
) -> None:
    windows = Windows(ZoneInfo(zone), week_start)
    start = windows.start_of(granularity, ts)
    assert start == window_start(ts * 1000, granularity, ZoneInfo(zone), week_start)
    end = windows.end_of(granularity, start)
    assert end == window_end(start, granularity, ZoneInfo(zone), week_start)
    assert start <= ts < end
    days = windows.days_in(granularity, start)
    # the days tile the period exactly, each one local day
    assert days[0] == start
    assert all(windows.end_of("day", a) == b for a, b in itertools.pairwise(days))
    assert windows.end_of("day", days[-1]) == end


@pytest.mark.parametrize(
    ("granularity", "when", "first", "count"),
    [
        ("week", datetime(2026, 1, 1, 12), datetime(2025, 12, 29), 7),  # ISO week 1 of 2026
        ("month", datetime(2024, 2, 15), datetime(2024, 2, 1), 29),
        ("quarter", datetime(2026, 11, 30), datetime(2026, 10, 1), 92),
        ("quarter", datetime(2026, 2, 1), datetime(2026, 1, 1), 90),
    ],
)
def test_known_periods(granularity: str, when: datetime, first: datetime, count: int) -> None:
    zone = ZoneInfo("Europe/Berlin")
    windows = Windows(zone)
    start = windows.start_of(granularity, when.replace(tzinfo=zone).timestamp())
    assert start == first.replace(tzinfo=zone).timestamp()
    assert len(windows.days_in(granularity, start)) == count


def test_week_start_setting() -> None:
    zone = ZoneInfo("UTC")
    thursday = datetime(2026, 12, 3, 9, tzinfo=zone).timestamp()
    monday = datetime(2026, 11, 30, tzinfo=zone).timestamp()
    assert Windows(zone).start_of("week", thursday) == monday
    assert (
        Windows(zone, "sun").start_of("week", thursday)
        == datetime(2026, 11, 29, tzinfo=zone).timestamp()
    )
