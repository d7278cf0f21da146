"""Half-life decay of score activities: the definition, its validation, and the stream against
the batch reference (tests/support/score_reference.py follows the written definition on its own:
decimal factor, Fractions, every boundary from the customer's first bucket)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stream.config.settings import MAX_HALF_LIFE_BUCKETS, ScoreActivity, ScoreSettings, Settings
from stream.config.wiring import score_rules
from stream.metrics.score import ScoreRules
from stream.metrics.score.codec import pack, unpack
from stream.metrics.score.decay import DECAY_CAP, ONE, decay_factor, decay_step
from stream.metrics.score.evaluation import DUE_SEARCH, ActivityHit, Customer, advance
from tests.support import score_reference
from tests.support.score_reference import reference_scores
from tests.unit.test_score import DAY, _run_stream, on_time_events

# name -> (events, weight, target); "social" is another family's: a missing factor
ACTIVITIES = {
    "views": (["page_view"], 40, 4),
    "features": (["feature_used"], 30, 2),
    "clicks": (["click"], 10, 1),
    "social": (["like"], 20, 1),
}


def rules_of(
    modes: dict[str, tuple[str, int]],
    lookback: int = 5,
    drop_points: int = 20,
    drop_buckets: int = 3,
    targets: dict[str, int] | None = None,
) -> ScoreRules:
    """Day buckets; ``modes``: activity -> ("lookback" | "half_life", days)."""
    activities = {}
    for k, (e, w, t) in ACTIVITIES.items():
        mode, days = modes.get(k, ("lookback", lookback))
        span = {f"{mode}_seconds": days * 86400} if k in modes else {}
        activities[k] = ScoreActivity(events=e, weight=w, target=(targets or {}).get(k, t), **span)
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        score=ScoreSettings(
            activities=activities,
            bucket_seconds=86400,
            lookback_seconds=lookback * 86400,
            drop_points=drop_points,
            drop_window_seconds=drop_buckets * 86400,
        ),
    )
    return score_rules(s)


def _acts(rules: ScoreRules) -> dict[str, tuple[list[str], int, int]]:
    return {a.name: (sorted(a.events), a.weight, a.target) for a in rules.activities}


def _modes(rules: ScoreRules) -> dict[str, tuple[str, int]]:
    return {
        a.name: ("half_life", a.half_life_buckets) if a.decays else ("lookback", n)
        for a, n in zip(rules.activities, rules.lookbacks, strict=True)
    }


# ---- the definition ---------------------------------------------------------------------------


@pytest.mark.parametrize("h", [*range(1, 40), 90, 365, 999, MAX_HALF_LIFE_BUCKETS])
def test_decay_factor_is_the_floor_of_the_real_factor(h: int) -> None:
    r = decay_factor(h)
    assert r == score_reference.decay_factor(h)
    # r / 2^32 <= 2^(-1/h) < (r + 1) / 2^32, in integers
    assert r**h <= 2 ** (32 * h - 1) < (r + 1) ** h


def test_decayed_amount_is_half_life_weighting_of_the_bucket_counts() -> None:
    """Away from the cap and the forgetting threshold, the fixed-point amount is
    sum(count x 0.5^(age / half-life)), age from the end of the event's bucket, to ~1e-9."""
    rng = random.Random(5)
    for h in (1, 3, 7, 30):
        # target 4: forgets below 1/64 of an event, caps at 256; the oldest weight is 2^-4.2
        r, target = decay_factor(h), 4
        counts = [rng.choice([0, 0, 1, 2, 3]) for _ in range(4 * h + 5)]
        d = 0
        for b, c in enumerate(counts, start=1):  # boundary b: bucket b - 1 just ended
            d = decay_step(d, c, r, target)
            exact = sum(n * 0.5 ** ((b - 1 - k) / h) for k, n in enumerate(counts[:b]))
            assert abs(d / ONE - exact) < 1e-6 * (1 + exact), (h, b)


def test_cap_and_forgetting() -> None:
    r = decay_factor(1)  # halves every bucket
    assert decay_step(0, 10_000, r, 2) == DECAY_CAP * 2 * ONE  # at most 64 x target
    assert decay_step(2 * ONE, 0, r, 2) == ONE
    # below target / 256 after the decay: forgotten, and a new bucket starts from 0
    assert decay_step(2 * ONE // 256, 0, r, 2) == 0
    assert decay_step(2 * ONE // 256, 1, r, 2) == ONE
    assert decay_step(4 * ONE // 256, 0, r, 2) == 2 * ONE // 256  # at the threshold: kept
    # a single event is never forgotten on arrival, however large the target
    assert decay_step(0, 1, r, 10_000) == ONE


# ---- configuration ----------------------------------------------------------------------------


def _settings(**activity: Any) -> ScoreSettings:
    return ScoreSettings(
        activities={"a": ScoreActivity(events=["page_view"], weight=100, target=1, **activity)}
    )


def test_lookback_and_half_life_are_mutually_exclusive() -> None:
    with pytest.raises(ValidationError, match="set lookback_seconds or half_life_seconds, not"):
        _settings(lookback_seconds=86400, half_life_seconds=86400)


@pytest.mark.parametrize("bad", [0, -86400])
def test_half_life_must_be_positive(bad: int) -> None:
    with pytest.raises(ValidationError, match=r"half_life_seconds\n.*greater than 0"):
        _settings(half_life_seconds=bad)


def test_half_life_is_whole_buckets_and_bounded() -> None:
    with pytest.raises(ValidationError, match=r"a\.half_life_seconds must be a multiple of score"):
        _settings(half_life_seconds=86400 + 1)
    with pytest.raises(ValidationError, match=r"a\.lookback_seconds must be a multiple of score"):
        _settings(lookback_seconds=3600)
    with pytest.raises(ValidationError, match="more than 1000 buckets"):
        _settings(half_life_seconds=(MAX_HALF_LIFE_BUCKETS + 1) * 86400)
    ok = score_rules(Settings(_env_file=None, score=_settings(half_life_seconds=7 * 86400)))  # type: ignore[call-arg]
    assert [a.half_life_buckets for a in ok.activities] == [7] and ok.decays
    assert ok.lookbacks == (0,)


# ---- stream == batch ------------------------------------------------------------------------

user_events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.sampled_from(["page_view", "feature_used", "click", "like", "scroll"]),
        st.integers(0, 40 * DAY),
    ),
    min_size=1,
    max_size=80,
)
mode = st.one_of(
    st.tuples(st.just("half_life"), st.integers(1, 4)),
    st.tuples(st.just("lookback"), st.integers(1, 6)),
)


@settings(max_examples=150, deadline=None)
@given(
    raw=user_events,
    cuts=st.lists(st.integers(0, 80), max_size=6),
    views=mode,
    features=st.tuples(st.just("half_life"), st.integers(1, 6)),
    clicks=mode,
    drop_points=st.integers(5, 40),
    burst=st.one_of(st.none(), st.integers(0, 40 * DAY)),
    shuffle=st.randoms(use_true_random=False),
)
def test_stream_with_decay_equals_batch_reference(
    raw: list[tuple[str, str, int]],
    cuts: list[int],
    views: tuple[str, int],
    features: tuple[str, int],
    clicks: tuple[str, int],
    drop_points: int,
    burst: int | None,
    shuffle: Any,
) -> None:
    """Any arrival order within the lateness and any batch cuts give the reference's scores and
    transitions, with decayed and lookback activities mixed (and a burst of clicks, target 1,
    that hits the 64 x target cap)."""
    lateness = 2 * DAY
    if burst is not None:
        raw = raw + [("u1", "click", burst)] * 70
    events: list[dict[str, Any]] = sorted(
        ({"type": k, "user_id": u, "ts": ts} for u, k, ts in raw), key=lambda e: e["ts"]
    )
    arrival = sorted(events, key=lambda e: e["ts"] + shuffle.randrange(0, DAY))
    rules = rules_of({"views": views, "features": features, "clicks": clicks}, 4, drop_points)
    customers, transitions, watermark = _run_stream(arrival, cuts, rules, lateness)
    on_time = on_time_events(arrival, lateness)
    series, expected = reference_scores(
        on_time, _acts(rules), DAY, 4, drop_points, 3, watermark, modes=_modes(rules)
    )
    assert sorted(transitions) == sorted(expected)
    for user, scores in series.items():
        if scores:
            assert customers[user].score == scores[-1][1], user


# ---- due times: the next boundary where the integer score changes -----------------------------


def _hits(events: list[tuple[str, int]]) -> list[ActivityHit]:
    return sorted(ActivityHit(ts, kind, "organic", "", -1, "") for kind, ts in events)


@pytest.mark.parametrize("seed", range(12))
def test_due_time_is_the_next_boundary_where_the_score_changes(seed: int) -> None:
    """A customer goes silent; woken only at its due times, it is evaluated exactly where the
    reference's score series changes, and never again once the score cannot change."""
    rng = random.Random(seed)
    rules = rules_of(
        {"views": ("half_life", rng.randint(1, 5)), "features": ("half_life", rng.randint(1, 9))},
        lookback=rng.randint(1, 6),
        targets={"views": rng.choice([1, 4, 30])},
    )
    raw = [
        (rng.choice(["page_view", "page_view", "feature_used", "click"]), rng.randrange(10 * DAY))
        for _ in range(rng.randint(1, 60))
    ]
    c = Customer("u")
    _, due = advance(c, _hits(raw), 10 * DAY, rules)
    horizon = 300  # days: every amount is long forgotten by then
    events = [{"type": k, "user_id": "u", "ts": ts} for k, ts in raw]
    series, _ = reference_scores(
        events, _acts(rules), DAY, rules.lookback_buckets, 20, 3, horizon * DAY,
        modes=_modes(rules),
    )  # fmt: skip
    score_at = dict(series["u"])
    changes = [b for b in sorted(score_at) if b > 10 and score_at[b] != score_at[b - 1]]
    woken = []
    while due is not None:
        assert due % DAY == 0 and due // DAY <= horizon
        woken.append(due // DAY)
        _, due = advance(c, [], due, rules)
        assert c.score == score_at[woken[-1]]
    assert woken == changes
    assert c.score == score_at[horizon]


def test_a_saturated_customer_is_searched_again_after_due_search_boundaries() -> None:
    """A long half-life at the cap: the score holds for 6 half-lives, more than the search
    looks ahead, so the customer is woken early (with no change) and searched again."""
    rules = score_rules(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            score=ScoreSettings(
                activities={
                    "a": ScoreActivity(
                        events=["page_view"], weight=100, target=1, half_life_seconds=200 * 60
                    )
                },
                bucket_seconds=60,
            ),
        )
    )
    c = Customer("u")
    _, due = advance(c, _hits([("page_view", 0)] * 100), 60_000, rules)
    assert c.score == 100 and c.decayed == {0: DECAY_CAP * ONE}
    events = [{"type": "page_view", "user_id": "u", "ts": 0}] * 100
    acts = {"a": (["page_view"], 100, 1)}
    series, _ = reference_scores(events, acts, 60_000, 1, 20, 1, 1400 * 60_000, modes=_HL200)
    # 64 x target halves to the target in 6 half-lives (1200 buckets); 99 takes a bit more
    change = next(b for b, score in series["u"] if score < 100)
    assert 1 + 1200 < change < 1 + 1300
    woken = []
    while due is not None and c.score == 100:
        woken.append(due // 60_000)
        _, due = advance(c, [], due, rules)
    assert woken == [1 + DUE_SEARCH, 1 + 2 * DUE_SEARCH, change]  # two early wakes, then it
    assert c.score == dict(series["u"])[change]


_HL200 = {"a": ("half_life", 200)}


def test_silence_decays_the_score_into_at_risk() -> None:
    rules = rules_of({"views": ("half_life", 2), "features": ("half_life", 2)})
    events: list[dict[str, Any]] = [
        {"type": "page_view", "user_id": "quiet", "ts": d * DAY + 1000} for d in range(5)
    ]
    events = [e for e in events for _ in range(4)]
    events += [{"type": "feature_used", "user_id": "quiet", "ts": d * DAY} for d in range(5)] * 2
    events += [{"type": "click", "user_id": "busy", "ts": d * DAY} for d in range(5, 30)]
    events.sort(key=lambda e: e["ts"])
    customers, transitions, _ = _run_stream(events, list(range(0, len(events), 3)), rules, 0)
    quiet = customers["quiet"]
    assert quiet.score == 0 and quiet.decayed == {}  # forgotten: nothing kept
    reasons = [t[2] for t in transitions if t[0] == "quiet"]
    assert "entered_at_risk" in reasons and "dropped" in reasons


def test_decayed_state_packs_small_and_round_trips() -> None:
    rules = rules_of({"views": ("half_life", 30), "features": ("half_life", 30)})
    c = Customer("user-123456")
    hits = [("page_view", d * DAY + 5) for d in range(60) for _ in range(3)]
    hits += [("feature_used", d * DAY + 7) for d in range(0, 60, 2)]
    hits += [("click", d * DAY + 9) for d in range(55, 60)]
    advance(c, _hits(hits), 59 * DAY + 1, rules)
    # buckets before the evaluated boundary hold no decayed counts: one amount per activity
    assert all(row[0] == 0 and row[1] == 0 for k, row in c.buckets.items() if k < c.evaluated)
    assert set(c.decayed) == {0, 1}
    text = pack(c)
    assert unpack(text, len(rules.activities)) == c
    assert len(text) < 160, (len(text), text)
    # a value written before decay existed (no trailing decay, ticket and pending-ticket
    # fields) still decodes
    old = json.dumps(json.loads(text)[:-3])
    assert unpack(old, len(rules.activities)).decayed == {}
