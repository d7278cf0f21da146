"""Live pacing of the simulator: a warm start at the catch-up speed, then the wall clock."""

from __future__ import annotations

from stream.tools.emit import release_time

STARTED = 10_000.0  # wall clock (s) when publishing starts
FIRST = int((STARTED - 600) * 1000)  # the history starts 10 minutes earlier


def test_without_a_catch_up_speed_an_event_goes_at_its_own_time() -> None:
    assert release_time(FIRST, FIRST, STARTED, None) == STARTED - 600
    assert release_time(FIRST + 700_000, FIRST, STARTED, None) == STARTED + 100


def test_the_past_is_paced_at_the_catch_up_speed() -> None:
    assert release_time(FIRST, FIRST, STARTED, 20) == STARTED
    assert release_time(FIRST + 200_000, FIRST, STARTED, 20) == STARTED + 10
    # 600 s of history at 20x meet the wall clock 600 / 19 s after the start.
    meet = FIRST + int((600 + 600 / 19) * 1000)
    assert abs(release_time(meet, FIRST, STARTED, 20) - (STARTED + 600 / 19)) < 1e-3


def test_after_catching_up_events_follow_the_wall_clock() -> None:
    assert release_time(FIRST + 700_000, FIRST, STARTED, 20) == STARTED + 100
