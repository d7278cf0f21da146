"""Query times: every malformed, non-finite or far-off value is a QueryError (a JSON 400),
never an exception the API would turn into a 500."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.engine.windows import QUERY_GRANULARITIES, Windows
from stream.metrics.reader import QueryError
from stream.serving.query import TIME_RANGE, parse_time

WINDOWS = Windows(ZoneInfo("Pacific/Kiritimati"))  # UTC+14: the furthest from UTC


@pytest.mark.parametrize(
    "text",
    ["NaN", "inf", "-inf", "1e400", "-99999999999999999999", "9999-12-31",
     "9999-12-31T23:59:59Z", "0001-01-01", "0001-01-01T00:00:00+14:00", "2026-02-30",
     "2026-01-01T00:00:00", "yesterday", ""],
)  # fmt: skip
def test_bad_times_are_query_errors(text: str) -> None:
    with pytest.raises(QueryError):
        parse_time(text, WINDOWS)


@given(st.text(max_size=30))
def test_any_text_parses_or_is_a_query_error(text: str) -> None:
    try:
        seconds = parse_time(text, WINDOWS)
    except QueryError:
        return
    assert TIME_RANGE[0] <= seconds < TIME_RANGE[1]


@given(st.floats(*TIME_RANGE, exclude_max=True), st.sampled_from(QUERY_GRANULARITIES))
def test_every_accepted_time_has_windows(seconds: float, granularity: str) -> None:
    start = WINDOWS.start_of(granularity, seconds)
    assert start <= seconds < WINDOWS.end_of(granularity, start)
