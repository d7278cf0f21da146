"""Tumbling event-time windows (minute, hour, day) and calendar periods (week, month, quarter)
cut in one IANA time zone.

A window is named by the epoch second at which it starts, which stays unambiguous across DST
changes (the repeated 01:00 hour of a fall-back day gets two different starts; a DST day is 23 or
25 hours long). Pure functions with small caches: the hot path calls :meth:`Windows.minute_of`
per event and rolls minutes up to hours and days once per batch, because minutes nest in local
hours and local hours nest in local days.

Minutes, hours and days are stored. Weeks (starting on a configured weekday, Monday as in ISO
8601), months and quarters are read-only: a calendar period is a whole number of local days, so
the read side combines its days (:meth:`Windows.days_in`) and never stores a period of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "CALENDAR_GRANULARITIES",
    "GRANULARITIES",
    "GRANULARITY_CODE",
    "LONGEST_SECONDS",
    "QUERY_GRANULARITIES",
    "WEEKDAYS",
    "Weekday",
    "Windows",
]

#: The stored windows.
GRANULARITIES: tuple[str, ...] = ("minute", "hour", "day")
#: Periods read as unions of their local days.
CALENDAR_GRANULARITIES: tuple[str, ...] = ("week", "month", "quarter")
QUERY_GRANULARITIES: tuple[str, ...] = GRANULARITIES + CALENDAR_GRANULARITIES
GRANULARITY_CODE: dict[str, str] = {
    "minute": "m",
    "hour": "h",
    "day": "d",
    "week": "w",
    "month": "mo",
    "quarter": "q",
}
#: The longest a window of each granularity lasts (a DST change adds an hour to a local day).
LONGEST_SECONDS: dict[str, int] = {
    "minute": 60,
    "hour": 3600,
    "day": 25 * 3600,
    "week": 7 * 86400 + 3600,
    "month": 31 * 86400 + 3600,
    "quarter": 92 * 86400 + 3600,
}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Windows:
    """Window arithmetic for one deployment's time zone."""

    def __init__(self, zone: ZoneInfo, week_start: Weekday = "mon") -> None:
        self.zone = zone
        self._first_weekday = WEEKDAYS.index(week_start)
        self._hour_cache: dict[int, int] = {}
        self._day_cache: dict[int, int] = {}

    @staticmethod
    def minute_of(ts_ms: int) -> int:
        # Every zone in use today has a whole-minute UTC offset, so minutes are cut the same way
        # in all of them and need no zone lookup.
        return ts_ms // 60_000 * 60

    def hour_of_minute(self, minute_start: int) -> int:
        """Local hour containing the minute starting at ``minute_start`` (epoch seconds)."""
        cached = self._hour_cache.get(minute_start)
        if cached is None:
            local = datetime.fromtimestamp(minute_start, self.zone)
            # Subtracting the elapsed local minutes keeps the UTC offset (and the fold) right.
            cached = minute_start - local.minute * 60
            if len(self._hour_cache) > 100_000:
                self._hour_cache.clear()
            self._hour_cache[minute_start] = cached
        return cached

    def day_of_minute(self, minute_start: int) -> int:
        """Local day (midnight to midnight) containing the minute starting at ``minute_start``."""
        cached = self._day_cache.get(minute_start)
        if cached is None:
            local = datetime.fromtimestamp(minute_start, self.zone)
            cached = self._local_midnight(local)
            if len(self._day_cache) > 100_000:
                self._day_cache.clear()
            self._day_cache[minute_start] = cached
        return cached

    def _local_midnight(self, local: datetime | date) -> int:
        midnight = datetime(local.year, local.month, local.day, tzinfo=self.zone)
        return int(midnight.timestamp())

    def _period_first_day(self, granularity: str, day: date) -> date:
        if granularity == "week":
            return day - timedelta(days=(day.weekday() - self._first_weekday) % 7)
        if granularity == "month":
            return day.replace(day=1)
        if granularity == "quarter":
            return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
        raise ValueError(f"unknown granularity {granularity!r}")

    def _next_period_first_day(self, granularity: str, first: date) -> date:
        if granularity == "week":
            return first + timedelta(days=7)
        months = 1 if granularity == "month" else 3
        month = first.month - 1 + months
        return date(first.year + month // 12, month % 12 + 1, 1)

    def days_in(self, granularity: str, start: int) -> list[int]:
        """The local day starts of the calendar period starting at ``start``."""
        day = datetime.fromtimestamp(start, self.zone).date()
        end = self._next_period_first_day(granularity, self._period_first_day(granularity, day))
        days = []
        while day < end:
            days.append(self._local_midnight(day))
            day += timedelta(days=1)
        return days

    def start_of(self, granularity: str, ts_seconds: float) -> int:
        minute = int(ts_seconds) // 60 * 60
        if granularity == "minute":
            return minute
        if granularity == "hour":
            return self.hour_of_minute(minute)
        if granularity == "day":
            return self.day_of_minute(minute)
        day = datetime.fromtimestamp(minute, self.zone).date()
        return self._local_midnight(self._period_first_day(granularity, day))

    def end_of(self, granularity: str, start: int) -> int:
        """Start of the next window (exclusive end of this one)."""
        if granularity == "minute":
            return start + 60
        if granularity == "hour":
            # An hour is 3600 s of real time even across DST changes.
            return start + 3600
        if granularity == "day":
            local = datetime.fromtimestamp(start, self.zone)
            next_day = (local + timedelta(days=1, hours=12)).date()
            return self._local_midnight(next_day)
        first = self._period_first_day(granularity, datetime.fromtimestamp(start, self.zone).date())
        return self._local_midnight(self._next_period_first_day(granularity, first))

    def iter_starts(self, granularity: str, start_s: float, end_s: float) -> Iterator[int]:
        """Window starts covering ``[start_s, end_s)``, the first one containing ``start_s``."""
        current = self.start_of(granularity, start_s)
        while current < end_s:
            yield current
            current = self.end_of(granularity, current)

    def previous_days(self, day_start: int, count: int) -> list[int]:
        """``count`` consecutive local day starts ending with (and including) ``day_start``."""
        days = [day_start]
        local = datetime.fromtimestamp(day_start, self.zone)
        for back in range(1, count):
            d = (local - timedelta(days=back)).date()
            days.append(int(datetime(d.year, d.month, d.day, tzinfo=self.zone).timestamp()))
        return days
