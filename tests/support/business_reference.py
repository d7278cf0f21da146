"""Brute-force business hours: minute by minute, in plain datetime. Shares no code with
stream/metrics/business_hours.py.

Each UTC minute is converted to local time; it is a business minute when its local date is not
a holiday and its local time of day lies in one of the weekday's intervals. This is exact for
schedules on whole minutes in zones whose offsets and transitions fall on whole minutes (every
zone since 1972), because then a whole UTC minute is either in business hours or not; interval
ends in milliseconds are handled by the overlap of each minute with ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

MINUTE = 60_000
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class BruteBusinessHours:
    zone: ZoneInfo
    #: weekday name -> [(first minute, end minute)) of the local day
    days: dict[str, list[tuple[int, int]]]
    holidays: frozenset[date]

    @classmethod
    def of(
        cls, schedule: Mapping[str, Iterable[str]], zone: str, holidays: Iterable[date] = ()
    ) -> BruteBusinessHours:
        days = {
            day: [(_minutes(i.split("-")[0]), _minutes(i.split("-")[1])) for i in intervals]
            for day, intervals in schedule.items()
        }
        return cls(ZoneInfo(zone), days, frozenset(holidays))

    def is_business_minute(self, minute_ms: int) -> bool:
        local = datetime.fromtimestamp(minute_ms // 1000, self.zone)
        if local.date() in self.holidays:
            return False
        of_day = local.hour * 60 + local.minute
        return any(a <= of_day < b for a, b in self.days.get(DAY_NAMES[local.weekday()], []))

    def business_ms(self, start_ms: int, end_ms: int) -> int:
        total = 0
        minute = start_ms - start_ms % MINUTE
        while minute < end_ms:
            if self.is_business_minute(minute):
                total += min(end_ms, minute + MINUTE) - max(start_ms, minute)
            minute += MINUTE
        return total
