"""When window keys expire: window end + retention; hours and days replayed late count from the
write, minute windows never do, so settled metrics have minute series only when minute windows
outlive the settling delay (docs/metrics.md, "Retention")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import Retention, Settings
from stream.config.wiring import build_layout, metric_options
from stream.engine.windows import Windows
from stream.metrics.catalog import CATALOG

SETTINGS = Settings()
WINDOWS = Windows(SETTINGS.zone)
LAYOUT = build_layout(SETTINGS, WINDOWS)
NOW = 1_800_000_000
R = Retention()


def test_defaults_keep_six_hours_of_minutes_two_weeks_of_hours_400_days_of_days() -> None:
    assert (R.minute, R.hour, R.day) == (6 * 3600, 14 * 86400, 400 * 86400)


@given(st.sampled_from(["minute", "hour", "day"]), st.integers(0, 10**6))
def test_a_live_window_expires_retention_after_its_end(granularity: str, ahead: int) -> None:
    start = WINDOWS.start_of(granularity, NOW)
    end = WINDOWS.end_of(granularity, start)
    # written while the window is open, or after its end within retention
    written = min(NOW + ahead, end)
    assert LAYOUT.expire_at(granularity, start, written) == end + R.for_granularity(granularity)


@given(st.integers(1, 400 * 86400))
def test_a_replayed_minute_window_keeps_no_more_than_a_live_one(age: int) -> None:
    start = WINDOWS.start_of("minute", NOW - age)
    end = WINDOWS.end_of("minute", start)
    expire = LAYOUT.expire_at("minute", start, NOW)
    assert expire == end + R.minute
    # older than retention: an EXPIREAT in the past, which Redis executes as a delete
    assert (expire <= NOW) == (end + R.minute <= NOW)


@given(st.sampled_from(["hour", "day"]), st.integers(1, 2 * 400 * 86400))
def test_replayed_hours_and_days_count_retention_from_the_write(granularity: str, age: int) -> None:
    start = WINDOWS.start_of(granularity, NOW - age)
    end = WINDOWS.end_of(granularity, start)
    assert LAYOUT.expire_at(granularity, start, NOW) == max(end, NOW) + R.for_granularity(
        granularity
    )


SETTLED = {
    "sessions",
    "session_duration_median",
    "bounce_rate",
    "tickets_created",
    "ticket_reopens",
    "first_reply_time_avg",
    "full_resolution_time_business_median",
    "new_customers",
    "lost_customers",
    "customers",
    "churn_rate",
    "retention_rate",
}


def test_with_the_defaults_settled_metrics_have_no_minute_series() -> None:
    # settled a 24 h lateness (+ the 30 min session timeout) after their events: their minute
    # windows expired 6 h after their end, so a minute series would read null for ever
    options = metric_options(Settings())
    assert not options.settled_minutes
    settled = {name for name, spec in CATALOG.items() if spec.settled}
    assert settled >= SETTLED
    assert not settled & {"ticket_backlog", "page_views", "active_users", "revenue", "nps"}
    for name in settled:
        why = CATALOG[name].unavailable_per("minute", options)
        assert why is not None and "ask per hour or day" in why
        assert CATALOG[name].unavailable_per("hour", options) is None
    assert CATALOG["page_views"].unavailable_per("minute", options) is None


def test_minute_windows_that_outlive_the_settling_delay_keep_them() -> None:
    short = metric_options(Settings(allowed_lateness_seconds=600))
    assert short.settled_minutes
    assert CATALOG["sessions"].unavailable_per("minute", short) is None
    long_minutes = Settings(retention=Retention(minute=2 * 86400))
    assert metric_options(long_minutes).settled_minutes
