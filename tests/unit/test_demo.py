"""The demo's traffic and score settings, checked against the batch score reference: its fading
cohort visibly crosses into at-risk within minutes of the live part, while the steady users stay
out of it (a simulation of the demo's first minutes, not a timed run)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from stream.cli import cli, simulation_config
from stream.config.settings import Settings
from stream.tools.demo import DEMO_TIMING, DemoTraffic
from stream.tools.simulate import Simulator
from tests.support.score_reference import reference_scores

MINUTE = 60_000
LIVE_MINUTES = 8


def test_demo_fading_cohort_crosses_into_at_risk_within_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in DEMO_TIMING.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    sc = settings.score
    assert sc.bucket_seconds == 60
    lateness = int(settings.allowed_lateness_seconds * 1000)

    # The demo's simulator command line, parsed by the real `stream simulate` (fewer users).
    traffic = DemoTraffic(users=600)
    live = 1_795_000_017_345  # the wall clock when the demo starts (not on a minute)
    args = traffic.args(live)
    simulate = cli.commands["simulate"]
    params = simulate.make_context(args[0], args[1:]).params
    assert params["live"]
    config = simulation_config(
        settings, seed=params["seed"], users=params["users"], start_ms=params["start_ms"],
        activity=params["activity"], fade_seconds=params["fade_seconds"],
        fade_after=params["fade_after"],
    )  # fmt: skip
    assert config.session_gap_floor_seconds == settings.session_timeout_seconds + 60
    sim = Simulator(config)
    fading = sim.fading_users()
    end = live + (LIVE_MINUTES + 2) * MINUTE
    # Every family reaches the score (other families are relayed to the clickstream partitions).
    events = [e.event for e in itertools.takewhile(lambda e: e.ts_ms < end, sim.events())]

    acts = {k: (a.events, a.weight, a.target) for k, a in sc.activities.items()}
    series, transitions = reference_scores(
        events, acts, MINUTE, sc.lookback_seconds // 60, sc.drop_points,
        sc.drop_window_seconds // 60, end - lateness,
    )  # fmt: skip
    first = live // MINUTE + 1  # the first boundary of the live part
    scores = {u: dict(s) for u, s in series.items() if s}
    cohort = [u for u in scores if u in fading]
    steady = [u for u in scores if u not in fading]
    assert len(cohort) > 40 and len(steady) > 400

    def at_risk(users: list[str], b: int) -> float:
        return sum(scores[u].get(b, 100) <= 40 for u in users) / len(users)

    # Settled when the live part starts: the history (longer than the lookback) warmed it up.
    assert at_risk(cohort, first - 1) < 0.15
    for b in range(first, first + LIVE_MINUTES):
        assert at_risk(steady, b) < 0.05, b  # the steady users stay out of the band
    # The cohort crosses during the first live minutes: visible in the band counts (a boundary
    # shows a lateness, 1 minute, after its instant: first + 3 by about 5 minutes in) ...
    crossed = [at_risk(cohort, first + m) for m in range(LIVE_MINUTES)]
    assert crossed[3] > 0.4 and crossed[-1] > 0.7, crossed
    assert all(b >= a - 0.05 for a, b in itertools.pairwise(crossed)), crossed
    # ... and as churn-risk transitions, most of them the cohort's.
    entered = Counter(
        u in fading
        for u, b, reason, _, _ in transitions
        if reason == "entered_at_risk" and first <= b <= first + 3
    )
    assert entered[True] > 0.35 * len(cohort) and entered[True] > entered[False], entered
