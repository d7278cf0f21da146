"""Business hours: how much of an interval falls inside a weekly schedule in a time zone.

Zendesk reports reply and resolution times in calendar hours and, with a schedule, in business
hours too. A schedule here is, per weekday, a list of ``[start, end)`` *local wall-clock*
intervals (Mon–Fri 09:00–17:00), an IANA time zone, and optional holiday dates (whole local days
without business hours).

Definition: an instant is in business hours when its local wall-clock time (in the zone) falls
in one of the intervals of its local weekday and its local date is not a holiday.
``business_ms(start, end)`` is the measure of those instants in ``[start, end)``. Consequences
on DST days, which a plain "convert both ends to local time" gets wrong:

* A 09:00–17:00 day is 8 h on a transition day too, unless the interval spans the shift.
* An interval spanning a spring-forward gap is shorter (01:00–04:00 is 2 h in Europe/Berlin on
  the last Sunday of March); one spanning a fall-back overlap is longer (the repeated hour's
  instants are in business hours twice over: 01:00–03:00 in New York on the first Sunday of
  November is 3 h).
* Wall-clock times that do not exist (02:30 on a spring-forward day) hold no instant, so an
  interval starting there effectively starts at the shift.
* A 24/7 schedule (every day ``00:00-24:00``) gives exactly the calendar time.

Why it is cheap for tickets open for months: real time is cut into stretches of constant UTC
offset (DST transitions, found once per zone and year and cached). Within a stretch local
wall-clock time is UTC plus a constant, so the business time of the stretch is a difference of
a cumulative function ``W`` on the *wall-clock* timeline, where every week is the same 7 × 24 h:
``W(x)`` = whole weeks × the week's total + the partial week (precomputed per weekday) − the
holidays before ``x`` (a bisect in a prefix sum). So a call costs O(transitions in the
interval · log holidays), not O(days).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import cast
from zoneinfo import ZoneInfo

from stream.engine.windows import WEEKDAYS, Weekday

__all__ = [
    "HOUR_MS",
    "MINUTE_MS",
    "WEEKDAYS",
    "BusinessHours",
    "Weekday",
    "parse_day",
    "parse_interval",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
#: 1970-01-01 (day 0 of the wall-clock timeline) was a Thursday: + 3 days puts Monday at 0.
_MONDAY_SHIFT_MS = 3 * DAY_MS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Offsets are sampled this often to find transitions (then bisected to the millisecond). Real
#: zones never change offset twice within 6 hours, which would be the only way to miss one.
_SAMPLE_MS = 6 * HOUR_MS
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Interval = tuple[int, int]  # [start, end) in ms since local midnight


def parse_interval(text: str) -> Interval:
    """``"09:00-17:00"`` as milliseconds since local midnight; ``24:00`` may end a day."""
    m = _INTERVAL.match(text)
    if m is None:
        raise ValueError(f"business-hours interval {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    for h, mi in ((h1, m1), (h2, m2)):
        if mi > 59 or h > 24 or (h == 24 and mi != 0):
            raise ValueError(f"business-hours interval {text!r}: {h:02d}:{mi:02d} is no time")
    start, end = h1 * HOUR_MS + m1 * MINUTE_MS, h2 * HOUR_MS + m2 * MINUTE_MS
    if start >= end:
        raise ValueError(
            f"business-hours interval {text!r} must end after it starts (same day; "
            "split a night shift into 22:00-24:00 and 00:00-06:00 of the next day)"
        )
    return start, end


def parse_day(name: str, texts: Sequence[str]) -> tuple[Interval, ...]:
    """A weekday's intervals, sorted; overlapping intervals are a configuration error."""
    intervals = sorted(parse_interval(t) for t in texts)
    for (_, e1), (s2, _) in itertools.pairwise(intervals):
        if s2 < e1:
            raise ValueError(f"business-hours intervals of {name} overlap: {list(texts)}")
    return tuple(intervals)


def _partial(intervals: tuple[Interval, ...], t: int) -> int:
    """Business ms of one day's intervals before ``t`` ms after local midnight."""
    return sum(min(t, e) - s for s, e in intervals if t > s)


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _offset_ms(zone: ZoneInfo, ms: int) -> int:
    offset = _utc(ms).astimezone(zone).utcoffset()
    assert offset is not None
    return offset // timedelta(milliseconds=1)


@lru_cache(maxsize=4096)
def _year_transitions(zone: ZoneInfo, year: int) -> tuple[tuple[int, int], ...]:
    """(instant ms, offset ms from then on) of every offset change in the UTC year."""
    start = int((datetime(year, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(milliseconds=1))
    end = int((datetime(year + 1, 1, 1, tzinfo=UTC) - _EPOCH) / timedelta(milliseconds=1))
    out: list[tuple[int, int]] = []
    t, offset = start, _offset_ms(zone, start)
    while t < end:
        nxt = min(t + _SAMPLE_MS, end)
        new = _offset_ms(zone, nxt)
        if new != offset:
            lo, hi = t, nxt  # offset(lo) == offset, offset(hi) != offset
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_ms(zone, mid) == offset:
                    lo = mid
                else:
                    hi = mid
            if hi < end:  # a change exactly at the year's end belongs to the next year
                out.append((hi, _offset_ms(zone, hi)))
            offset = new
        t = nxt
    # The first instant of the year may itself be a transition: compare with the ms before.
    if _offset_ms(zone, start - 1) != _offset_ms(zone, start):
        out.insert(0, (start, _offset_ms(zone, start)))
    return tuple(out)


def _transitions(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int]]:
    """Offset changes at instants in (start, end)."""
    first, last = _utc(start).year, _utc(end).year
    return [
        (t, o)
        for year in range(first, last + 1)
        for t, o in _year_transitions(zone, year)
        if start < t < end
    ]


@dataclass(frozen=True)
class BusinessHours:
    """A weekly schedule in a zone, with holidays. Build with :meth:`build`."""

    zone: ZoneInfo
    #: Per weekday, Monday first: sorted, non-overlapping intervals (ms since local midnight).
    week: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()
    _day_total: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _before_day: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _week_total: int = field(init=False, repr=False, compare=False)
    _holiday_days: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _holiday_prefix: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a business-hours week has 7 days")
        totals = tuple(sum(e - s for s, e in day) for day in self.week)
        before = [0]
        for total in totals:
            before.append(before[-1] + total)
        # Only holidays on a day with business hours take anything away.
        days = sorted(d.toordinal() - _EPOCH_ORDINAL for d in self.holidays if totals[d.weekday()])
        prefix = [0]
        for day in days:
            prefix.append(prefix[-1] + totals[(day + 3) % 7])
        object.__setattr__(self, "_day_total", totals)
        object.__setattr__(self, "_before_day", tuple(before))
        object.__setattr__(self, "_week_total", before[-1])
        object.__setattr__(self, "_holiday_days", tuple(days))
        object.__setattr__(self, "_holiday_prefix", tuple(prefix))

    @classmethod
    def build(
        cls,
        schedule: Mapping[Weekday, Sequence[str]] | Mapping[str, Sequence[str]],
        zone: str,
        holidays: Iterable[date] = (),
    ) -> BusinessHours:
        """From configuration: ``{"mon": ["09:00-17:00"], …}`` (missing days: closed)."""
        days = cast(Mapping[str, Sequence[str]], schedule)
        unknown = sorted(set(days) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"business-hours schedule has unknown weekdays {unknown}")
        week = tuple(parse_day(d, days.get(d, ())) for d in WEEKDAYS)
        return cls(ZoneInfo(zone), week, frozenset(holidays))

    @property
    def week_ms(self) -> int:
        """Business milliseconds of a week without holidays."""
        return self._week_total

    def _wall_cumulative(self, x: int) -> int:
        """Business ms on the wall-clock timeline from its (arbitrary) origin up to ``x``."""
        weeks, in_week = divmod(x + _MONDAY_SHIFT_MS, WEEK_MS)
        weekday, in_day = divmod(in_week, DAY_MS)
        partial = _partial(self.week[weekday], in_day)
        total = weeks * self._week_total + self._before_day[weekday] + partial
        if self._holiday_days:
            day = x // DAY_MS
            i = bisect.bisect_left(self._holiday_days, day)
            total -= self._holiday_prefix[i]
            if i < len(self._holiday_days) and self._holiday_days[i] == day:
                total -= partial
        return total

    def business_ms(self, start_ms: int, end_ms: int) -> int:
        """Milliseconds of ``[start_ms, end_ms)`` (UTC epoch ms) inside business hours.

        0 when ``end_ms <= start_ms``. Additive: ``business(a, c) = business(a, b) +
        business(b, c)`` for ``a ≤ b ≤ c``.
        """
        if end_ms <= start_ms:
            return 0
        total = 0
        at, offset = start_ms, _offset_ms(self.zone, start_ms)
        for change, new_offset in [*_transitions(self.zone, start_ms, end_ms), (end_ms, 0)]:
            total += self._wall_cumulative(change + offset) - self._wall_cumulative(at + offset)
            at, offset = change, new_offset
        return total
