"""Business hours: DST days, holidays, midnight and weeks, against a minute-by-minute reference;
and the settings that configure them, refused with a clear message when wrong.

The reference (tests/support/business_reference.py) converts every UTC minute to local time with
plain datetime and shares no code with stream/metrics/business_hours.py, which answers from
per-week totals and the zone's transitions instead.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from stream.config.settings import BusinessHoursSettings, Settings
from stream.metrics.business_hours import (
    HOUR_MS,
    MINUTE_MS,
    WEEKDAYS,
    BusinessHours,
    parse_day,
    parse_interval,
)
from tests.support.business_reference import BruteBusinessHours

WEEKDAYS_9_17 = {d: ["09:00-17:00"] for d in WEEKDAYS[:5]}
EVERY_DAY_9_17 = {d: ["09:00-17:00"] for d in WEEKDAYS}
ALWAYS = {d: ["00:00-24:00"] for d in WEEKDAYS}


def at(text: str, zone: str) -> int:
    """Epoch ms of a local wall-clock time (the first one, where it is ambiguous)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def hours(schedule: dict[str, list[str]], zone: str, start: str, end: str, **kw: object) -> float:
    bh = BusinessHours.build(schedule, zone, **kw)  # type: ignore[arg-type]
    return bh.business_ms(at(start, zone), at(end, zone)) / HOUR_MS


# ---- examples ----------------------------------------------------------------------------


def test_a_working_week_and_the_weekend() -> None:
    z = "Europe/Berlin"
    # Friday 16:00 → Monday 10:00: 1 h on Friday, 1 h on Monday, nothing at the weekend.
    assert hours(WEEKDAYS_9_17, z, "2026-01-09T16:00", "2026-01-12T10:00") == 2
    assert hours(WEEKDAYS_9_17, z, "2026-01-05T00:00", "2026-01-12T00:00") == 40
    assert hours(WEEKDAYS_9_17, z, "2026-01-10T08:00", "2026-01-11T20:00") == 0  # Sat–Sun
    assert hours(WEEKDAYS_9_17, z, "2026-01-05T12:00", "2026-01-05T12:00") == 0
    assert hours(WEEKDAYS_9_17, z, "2026-01-05T12:00", "2026-01-05T11:00") == 0  # end first


def test_split_days_and_midnight() -> None:
    z = "America/New_York"
    split = {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["22:00-24:00"], "wed": ["00:00-06:00"]}
    assert hours(split, z, "2026-01-05T11:00", "2026-01-05T14:00") == 2  # lunch is not counted
    # A night shift across midnight: Tuesday 22:00 → Wednesday 06:00.
    assert hours(split, z, "2026-01-06T23:00", "2026-01-07T01:30") == 2.5


def test_holidays_are_whole_local_days_off() -> None:
    z = "America/New_York"
    week = ("2026-12-21T00:00", "2026-12-28T00:00")
    assert hours(WEEKDAYS_9_17, z, *week) == 40
    assert hours(WEEKDAYS_9_17, z, *week, holidays=[date(2026, 12, 25)]) == 32
    # A holiday on a closed day takes nothing; starting inside a holiday counts from the next day.
    assert hours(WEEKDAYS_9_17, z, *week, holidays=[date(2026, 12, 26)]) == 40
    got = hours(
        WEEKDAYS_9_17, z, "2026-12-25T10:00", "2026-12-28T11:00", holidays=[date(2026, 12, 25)]
    )
    assert got == 2


@pytest.mark.parametrize(
    ("zone", "day", "calendar_hours"),
    [
        ("Europe/Berlin", "2026-03-29", 23),  # spring forward 02:00 → 03:00
        ("Europe/Berlin", "2026-10-25", 25),  # fall back 03:00 → 02:00
        ("America/New_York", "2026-03-08", 23),
        ("America/New_York", "2026-11-01", 25),
    ],
)
def test_dst_days(zone: str, day: str, calendar_hours: int) -> None:
    after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    whole_day = (f"{day}T00:00", f"{after}T00:00")
    # 09:00–17:00 does not span the shift: 8 h, as on any other day.
    assert hours(EVERY_DAY_9_17, zone, *whole_day) == 8
    # 24/7 business hours are calendar hours: 23 or 25 on the transition day.
    assert hours(ALWAYS, zone, *whole_day) == calendar_hours
    # An interval spanning the shift loses or gains it (New York shifts at 02:00, Berlin at
    # 02:00 in spring and 03:00 in autumn: 00:00–06:00 spans all four).
    night = {d: ["00:00-06:00"] for d in WEEKDAYS}
    assert hours(night, zone, *whole_day) == 6 + (calendar_hours - 24)


def test_wall_clock_times_that_do_not_exist_or_repeat() -> None:
    ny = "America/New_York"
    # 02:30 does not exist on 2026-03-08: 02:30–05:00 holds the instants 03:00–05:00 EDT.
    gap = {"sun": ["02:30-05:00"]}
    assert hours(gap, ny, "2026-03-08T00:00", "2026-03-09T00:00") == 2
    # 01:00–03:00 on 2026-11-01: 01:00–02:00 happens twice (EDT, then EST): 3 h.
    overlap = {"sun": ["01:00-03:00"]}
    assert hours(overlap, ny, "2026-11-01T00:00", "2026-11-02T00:00") == 3
    # Starting during the second 01:30 (EST) counts only what is left.
    second = at("2026-11-01T01:30", ny) + HOUR_MS
    bh = BusinessHours.build(overlap, ny)
    assert bh.business_ms(second, at("2026-11-02T00:00", ny)) == 90 * MINUTE_MS


def test_a_half_hour_dst_shift_and_a_zone_without_dst() -> None:
    # Lord Howe Island moves 30 minutes at 02:00 on the first Sunday of April (to 01:30).
    assert hours(ALWAYS, "Australia/Lord_Howe", "2026-04-05T00:00", "2026-04-06T00:00") == 24.5
    assert hours(EVERY_DAY_9_17, "Asia/Kolkata", "2026-01-01T00:00", "2027-01-01T00:00") == (
        365 * 8
    )


def test_tickets_open_for_months_and_years() -> None:
    z = "Europe/Berlin"
    bh = BusinessHours.build(WEEKDAYS_9_17, z, [date(2026, 12, 25)])
    # 2026 has 261 weekdays, one of them the holiday: 260 × 8 h, DST changes included.
    assert bh.business_ms(at("2026-01-01T00:00", z), at("2027-01-01T00:00", z)) == 260 * 8 * HOUR_MS
    brute = BruteBusinessHours.of(WEEKDAYS_9_17, z, [date(2026, 12, 25)])
    start, end = at("2026-02-20T13:37", z) + 123, at("2026-05-02T08:00", z) - 7
    assert bh.business_ms(start, end) == brute.business_ms(start, end)  # over the March shift
    # Ten years: each year's piece adds up to the whole.
    years = [at(f"{y}-01-01T00:00", z) for y in range(2026, 2037)]
    pieces = sum(bh.business_ms(a, b) for a, b in itertools.pairwise(years))
    assert bh.business_ms(years[0], years[-1]) == pieces


def test_week_total() -> None:
    assert BusinessHours.build(WEEKDAYS_9_17, "UTC").week_ms == 40 * HOUR_MS
    assert BusinessHours.build({}, "UTC").week_ms == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-17", "is not HH:MM-HH:MM"),
        ("09:00-25:00", "is no time"),
        ("09:60-10:00", "is no time"),
        ("24:30-24:45", "is no time"),
        ("17:00-09:00", "must end after it starts"),
        ("09:00-09:00", "must end after it starts"),
    ],
)
def test_bad_intervals_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_interval(text)


def test_intervals() -> None:
    assert parse_interval(" 09:30 - 24:00 ") == (9 * HOUR_MS + 30 * MINUTE_MS, 24 * HOUR_MS)
    assert parse_day("mon", ["13:00-17:00", "09:00-13:00"]) == (
        (9 * HOUR_MS, 13 * HOUR_MS),
        (13 * HOUR_MS, 17 * HOUR_MS),
    )
    with pytest.raises(ValueError, match="of mon overlap"):
        parse_day("mon", ["09:00-13:00", "12:00-17:00"])
    with pytest.raises(ValueError, match="unknown weekdays"):
        BusinessHours.build({"monday": ["09:00-17:00"]}, "UTC")


# ---- properties ----------------------------------------------------------------------------

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Asia/Kolkata",
    "UTC",
]
#: Around these instants the zones above change their offsets (and one quiet week).
ANCHORS = [
    at("2026-03-29T01:00", "Europe/Berlin"),
    at("2026-10-25T01:00", "Europe/Berlin"),
    at("2026-03-08T01:00", "America/New_York"),
    at("2026-11-01T00:30", "America/New_York"),
    at("2026-04-05T01:00", "Australia/Lord_Howe"),
    at("2026-10-04T01:00", "Australia/Lord_Howe"),
    at("2026-06-10T12:00", "UTC"),
]


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, list[str]]:
    """Per weekday up to three intervals on a 5-minute grid (some days closed)."""
    out: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        cuts = sorted(set(draw(st.lists(st.integers(0, 288), max_size=6))))
        pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
        if pairs:
            out[day] = [f"{a // 12:02d}:{a % 12 * 5:02d}-{b // 12:02d}:{b % 12 * 5:02d}"
                        for a, b in pairs]  # fmt: skip
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, list[str]], str, list[date], int, int]:
    schedule = draw(schedules())
    zone = draw(st.sampled_from(ZONES))
    anchor = draw(st.sampled_from(ANCHORS))
    # Whole hours and days drawn apart from the milliseconds: hypothesis favours small integers,
    # and the transitions are hours away from the anchors.
    start = anchor + draw(st.integers(-72, 24)) * HOUR_MS + draw(st.integers(0, HOUR_MS - 1))
    end = start + draw(st.integers(0, 6)) * 24 * HOUR_MS + draw(st.integers(0, 24 * HOUR_MS))
    first = datetime.fromtimestamp(start // 1000, ZoneInfo(zone)).date()
    holidays = [first + timedelta(days=d) for d in draw(st.sets(st.integers(-1, 7), max_size=3))]
    return schedule, zone, holidays, start, end


@given(cases())
@example((ALWAYS, "America/New_York", [], ANCHORS[3] - HOUR_MS, ANCHORS[3] + 3 * HOUR_MS))
@example(({"sun": ["02:30-05:00"]}, "America/New_York", [], ANCHORS[2] - 9 * HOUR_MS,
          ANCHORS[2] + 20 * HOUR_MS))  # fmt: skip
def test_equals_the_minute_by_minute_reference(
    case: tuple[dict[str, list[str]], str, list[date], int, int],
) -> None:
    schedule, zone, holidays, start, end = case
    fast = BusinessHours.build(schedule, zone, holidays).business_ms(start, end)
    assert fast == BruteBusinessHours.of(schedule, zone, holidays).business_ms(start, end)


@given(cases(), st.integers(0, 2**32))
def test_additive_bounded_and_monotonic(
    case: tuple[dict[str, list[str]], str, list[date], int, int], split: int
) -> None:
    schedule, zone, holidays, a, c = case
    assume(a < c)
    b = a + split % (c - a)
    bh = BusinessHours.build(schedule, zone, holidays)
    whole = bh.business_ms(a, c)
    assert whole == bh.business_ms(a, b) + bh.business_ms(b, c)
    assert 0 <= bh.business_ms(a, b) <= whole <= c - a
    assert BusinessHours.build(ALWAYS, zone).business_ms(a, c) == c - a
    # Holidays only take time away.
    assert whole <= BusinessHours.build(schedule, zone).business_ms(a, c)


def test_the_properties_see_business_time() -> None:
    """Guard against a vacuous property: the anchors' examples do contain business hours."""
    bh = BusinessHours.build(WEEKDAYS_9_17, "America/New_York")
    assert all(bh.business_ms(a - 3 * 24 * HOUR_MS, a + 3 * 24 * HOUR_MS) > 0 for a in ANCHORS)


# ---- settings ------------------------------------------------------------------------------


def test_off_by_default_and_built_from_settings() -> None:
    assert Settings(_env_file=None).business_hours() is None  # type: ignore[call-arg]
    s = Settings(  # type: ignore[call-arg]
        _env_file=None,
        timezone="Europe/Berlin",
        support_business_hours=BusinessHoursSettings(enabled=True, holidays=[date(2026, 1, 6)]),
    )
    bh = s.business_hours()
    assert bh is not None
    assert bh.zone == ZoneInfo("Europe/Berlin")  # empty timezone: the windows' zone
    assert bh.week_ms == 40 * HOUR_MS and bh.holidays == {date(2026, 1, 6)}
    other = BusinessHoursSettings(enabled=True, timezone="Asia/Tokyo")
    tokyo = s.with_overrides(support_business_hours=other).business_hours()
    assert tokyo is not None and tokyo.zone == ZoneInfo("Asia/Tokyo")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_SUPPORT_BUSINESS_HOURS__ENABLED", "true")
    monkeypatch.setenv("STREAM_SUPPORT_BUSINESS_HOURS__SCHEDULE", '{"sat": ["10:00-14:00"]}')
    monkeypatch.setenv("STREAM_SUPPORT_BUSINESS_HOURS__HOLIDAYS", '["2026-12-26"]')
    bh = Settings(_env_file=None).business_hours()  # type: ignore[call-arg]
    assert bh is not None and bh.week_ms == 4 * HOUR_MS
    assert bh.holidays == {date(2026, 12, 26)}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": {"mon": ["9-17"]}}, r"support_business_hours\.schedule: .* HH:MM-HH:MM"),
        ({"schedule": {"mon": ["09:00-12:00", "11:00-17:00"]}}, "intervals of mon overlap"),
        ({"schedule": {"tue": ["18:00-02:00"]}}, "must end after it starts"),
        ({"schedule": {"monday": ["09:00-17:00"]}}, "'mon', 'tue'"),
        ({"timezone": "Mars/Olympus"}, r"support_business_hours\.timezone: unknown IANA"),
        ({"holidays": ["25.12.2026"]}, "date"),
        ({"enabled": True, "schedule": {}}, "has no business hours in the week"),
    ],
)
def test_bad_settings_are_refused_at_start(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, support_business_hours=fields)  # type: ignore[call-arg]
