"""Feedback, social and account math without Kafka or Redis: definitions and stream == batch.

The customer property test runs random subscription histories in random arrival orders and
batch cuts through the real handlers and ``SubscriptionState.settle`` and compares the settled new
and lost customers with the batch replay of tests/support/families_reference.py.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from stream.metrics import accounts, feedback, social
from stream.metrics.accounts import AccountsFold, SubscriptionState
from stream.metrics.feedback import FeedbackFold
from stream.metrics.labels import BoundedLabels
from stream.metrics.social import SocialFold
from tests.support.events import event
from tests.support.families_reference import (
    customer_transitions,
    partition_watermarks,
    window_end,
    window_start,
)
from tests.support.keyed_driver import Outcome, run_keyed
from tests.support.reference import FAMILY, partition_of

MIN = 60_000
UTC = ZoneInfo("UTC")
T0 = 1_767_225_600_000
LATENESS = 30 * MIN
PARTITIONS = 2


def test_nps_range_and_passives() -> None:
    assert feedback.nps(0, 0, 0) is None
    assert feedback.nps(4, 4, 0) == 100 and feedback.nps(4, 0, 4) == -100
    assert feedback.nps(4, 1, 1) == 0  # two passives count only in the denominator


def test_score_buckets_at_the_edges() -> None:
    assert feedback.score_measures("nps_response", 9) == {"nps.pro": 1, "nps.det": 0}
    assert feedback.score_measures("nps_response", 7) == {"nps.pro": 0, "nps.det": 0}
    assert feedback.score_measures("nps_response", 6) == {"nps.pro": 0, "nps.det": 1}
    assert feedback.score_measures("csat_response", 3) == {"csat.top": 0}  # 3 counts as bad
    assert feedback.score_measures("csat_response", 4) == {"csat.top": 1}
    assert feedback.score_measures("ces_response", 5) == {"ces.sum": 5, "ces.hi": 1}


def test_follower_growth_null_without_a_start() -> None:
    assert social.growth(0, 5) is None
    assert social.growth(-2, 5) is None
    assert social.growth(200, 150) == -25.0


def test_labels_are_bounded_and_escaped() -> None:
    labels = BoundedLabels(["in_app", "a|b"])
    assert labels("in_app") == "in_app"
    assert labels("carrier pigeon") == "other"
    assert labels(None) == "%28not%20set%29"
    assert labels("a|b") == "a%7Cb"


def _fold(handlers: dict[str, Any], events: list[dict[str, Any]]) -> Outcome:
    class NoState:
        name = "none"
        due_limit = 0
        families = frozenset[str]()

        def handlers(self) -> dict[str, Any]:
            return {}

        def field_of(self, key: Any) -> str:
            return str(key)

        def settle(self, *args: Any) -> dict[str, tuple[str | None, int | None]]:
            return {}

    return run_keyed(NoState(), handlers, events, [], partitions=1, lateness_ms=LATENESS)


def test_survey_fields_per_touchpoint() -> None:
    out = _fold(
        FeedbackFold(BoundedLabels(["in_app"])).handlers(),
        [
            event("nps_response", "a", T0, score=10, touchpoint="in_app"),
            event("nps_response", "b", T0, score=3, touchpoint="kiosk"),
            event("csat_response", "a", T0, score=5),
            event("ces_response", "a", T0, score=6, touchpoint="in_app"),
        ],
    )
    fields = {f: v for (_, f), v in out.counters.items()}
    assert fields == {
        "nps.n|in_app": 1, "nps.pro|in_app": 1, "nps.n|other": 1, "nps.det|other": 1,
        "csat.n|%28not%20set%29": 1, "csat.top|%28not%20set%29": 1,
        "ces.n|in_app": 1, "ces.sum|in_app": 6, "ces.hi|in_app": 1,
    }  # fmt: skip


def test_social_actions_and_follower_total() -> None:
    out = _fold(
        SocialFold(BoundedLabels(["x"])).handlers(),
        [
            event("follow", "a", T0, platform="x"),
            event("follow", "b", T0, platform="x"),
            event("unfollow", "a", T0 + MIN, platform="x"),
            event("like", "a", T0, platform="myspace", post_id="p"),
        ],
    )
    assert out.totals == Counter({(social.FOLLOWERS, "x"): 1})
    assert sum(v for (_, f), v in out.counters.items() if f == "soc.like|other") == 1


def test_revenue_and_lifetime_value_in_minor_units() -> None:
    out = _fold(
        AccountsFold().handlers(),
        [
            event("purchase", "a", T0, amount=19.99),
            event("subscription_started", "a", T0, amount=29.0, plan="pro"),
            event("subscription_cancelled", "a", T0, amount=500.0),  # no revenue
            event("purchase", "b", T0),  # no amount: a purchase, no revenue
        ],
    )
    fields = Counter({f: v for (_, f), v in out.counters.items()})
    assert fields["acc.revenue"] == 4899 and fields["acc.purchases"] == 2
    assert fields[accounts.PURCHASE_REVENUE] == 1999  # the average order value's numerator
    assert out.totals[(accounts.LTV, accounts.customer_key("a"))] == 4899
    assert (accounts.LTV, accounts.customer_key("b")) not in out.totals


def test_customer_status_settles_in_event_time_order() -> None:
    active, transitions, rest = accounts.settle_subscription(False, [(30, 1), (10, 0), (50, 0)], 40)
    assert (active, transitions, rest) == (False, [(10, 0), (30, 1)], [(50, 0)])
    # a cancel of a customer never seen starting loses nobody; a second start gains nobody
    assert accounts.settle_subscription(False, [(1, 1)], 10)[1] == []
    assert accounts.settle_subscription(True, [(1, 0)], 10)[1] == []
    assert accounts.unpack(accounts.pack(True, [(5, 1)])) == (True, [(5, 1)], [], [])
    assert accounts.unpack(accounts.pack(False, [], [3, 4])) == (False, [], [3, 4], [])
    assert accounts.unpack(accounts.pack(False, [], [3], [7, 9])) == (False, [], [3], [7, 9])
    assert accounts.unpack(b"1;5,1") == (True, [(5, 1)], [], [])  # written before the history


def _customers(events: list[dict[str, Any]], cuts: list[int]) -> tuple[Outcome, Counter[Any]]:
    state = SubscriptionState()
    out = run_keyed(
        state, state.handlers(), events, cuts, partitions=PARTITIONS, lateness_ms=LATENESS
    )
    marks = partition_watermarks(
        out.on_time, FAMILY, lambda u: partition_of(u, PARTITIONS), LATENESS
    )
    want: Counter[Any] = Counter()
    for ts, _, kind in customer_transitions(
        out.on_time, lambda u: marks[("account", partition_of(u, PARTITIONS))]
    ):
        want[(ts // MIN * 60, "acc." + kind)] += 1
        want[("total",)] += 1 if kind == "new" else -1
    return out, want


def out_of_order_batches(
    draw: st.DrawFn, events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[int]]:
    """The events in an arrival order up to 45 minutes off event time, and batch cuts."""
    events.sort(key=lambda e: e["ts"])
    rng = random.Random(draw(st.integers(0, 2**32)))
    arrival = sorted(events, key=lambda e: e["ts"] + rng.randint(0, 45 * MIN))
    return arrival, draw(st.lists(st.integers(0, len(arrival)), max_size=6))


@st.composite
def subscriptions(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    events = [
        event(
            draw(st.sampled_from(["subscription_started", "subscription_cancelled"])),
            draw(st.sampled_from(["ann", "bob", "cyd", "dan"])),
            T0 + draw(st.integers(0, 48)) * 5 * MIN + draw(st.sampled_from([0, 1])),
        )
        for _ in range(draw(st.integers(1, 30)))
    ]
    return out_of_order_batches(draw, events)


@given(subscriptions())
def test_stream_customers_equal_batch_replay(case: tuple[list[dict[str, Any]], list[int]]) -> None:
    out, want = _customers(*case)
    got: Counter[Any] = Counter(
        {k: v for k, v in out.counters.items() if k[1] in ("acc.new", "acc.lost")}
    )
    got[("total",)] = out.totals.get((accounts.SUBSCRIBED, "all"), 0)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}


def test_property_harness_sees_customers_come_and_go() -> None:
    events = [
        event("subscription_started", "ann", T0),
        event("subscription_cancelled", "ann", T0 + 20 * MIN),
        event("subscription_started", "ann", T0 + 10 * MIN),  # out of order: a duplicate start
        event("subscription_started", "bob", T0 + 5 * MIN),
        event("subscription_started", "ann", T0 + 3 * 60 * MIN),  # moves the watermark
        event("subscription_started", "bob", T0 + 3 * 60 * MIN),
    ]
    out, want = _customers(events, [1, 2])
    assert want[("total",)] == 1 and sum(want.values()) > 1
    assert out.totals[(accounts.SUBSCRIBED, "all")] == 1


@given(subscriptions())
def test_churn_and_retention_count_only_the_customers_present_at_the_start(
    case: tuple[list[dict[str, Any]], list[int]],
) -> None:
    """Per window of each granularity, from the settled timeline alone: of the customers
    subscribed just before the window, how many are lost in it and how many are gone at its
    end; the state's per-transition fields must sum to exactly that."""
    out, _ = _customers(*case)
    marks = partition_watermarks(
        out.on_time, FAMILY, lambda u: partition_of(u, PARTITIONS), LATENESS
    )
    timeline: dict[str, list[tuple[int, str]]] = {}
    for ts, user, kind in customer_transitions(
        out.on_time, lambda u: marks[("account", partition_of(u, PARTITIONS))]
    ):
        timeline.setdefault(user, []).append((ts, kind))

    def subscribed(user: str, before_ms: int) -> bool:
        # in settled order (a start before a cancel of the same millisecond), not re-sorted
        kinds = [k for ts, k in timeline[user] if ts < before_ms]
        return bool(kinds) and kinds[-1] == "new"

    for g, code in (
        ("minute", "m"), ("hour", "h"), ("day", "d"), ("week", "w"), ("month", "mo"),
        ("quarter", "q"),
    ):  # fmt: skip
        starts = {window_start(ts, g, UTC) for changes in timeline.values() for ts, _ in changes}
        for start in starts:
            end = window_end(start, g, UTC)
            present = [u for u in timeline if subscribed(u, start * 1000)]
            lost = [
                u
                for u in present
                if any(k == "lost" and start * 1000 <= ts < end * 1000 for ts, k in timeline[u])
            ]
            absent = [u for u in present if not subscribed(u, end * 1000)]

            def total(f: str, start: int = start, end: int = end) -> int:
                return sum(v for (m, k), v in out.counters.items() if k == f and start <= m < end)

            assert total("acc.churned." + code) == len(lost)
            assert total("acc.gone." + code) - total("acc.returned." + code) == len(absent)


def test_a_new_customer_lost_in_the_window_is_not_churn() -> None:
    # one customer at the start (ann) stays; two new ones (bob, cyd) leave within the hour:
    # lost_customers 2, but nobody present at the start was lost
    hour = 3_600_000
    events = [
        event("subscription_started", "ann", T0 - 2 * hour),
        event("subscription_started", "bob", T0 + 5 * MIN),
        event("subscription_cancelled", "bob", T0 + 10 * MIN),
        event("subscription_started", "cyd", T0 + 15 * MIN),
        event("subscription_cancelled", "cyd", T0 + 20 * MIN),
        # later events of each customer move their partition's watermark past the first hour
        *(event("subscription_started", u, T0 + 5 * hour) for u in ("ann", "bob", "cyd")),
    ]
    out, _ = _customers(events, [])
    first_hour: Counter[str] = Counter()
    for (m, k), v in out.counters.items():
        if T0 // 1000 <= m < T0 // 1000 + 3600:
            first_hour[k] += v
    assert first_hour.get("acc.lost") == 2
    assert "acc.churned.h" not in first_hour and "acc.gone.h" not in first_hour


@st.composite
def purchases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    """Purchases over ~100 days (past a quarter, so the state forgets old ones), some minutes
    apart, arriving out of order within the lateness, cut into random batches."""
    day = 24 * 60 * MIN
    events = [
        event(
            "purchase",
            draw(st.sampled_from(["ann", "bob", "cyd", "dan"])),
            T0 + draw(st.integers(0, 200)) * day // 2 + draw(st.integers(0, 3)) * 7 * MIN,
            amount=10.0,
        )
        for _ in range(draw(st.integers(1, 40)))
    ]
    return out_of_order_batches(draw, events)


@given(purchases())
def test_repeat_buyers_are_the_customers_with_two_purchases_in_the_period(
    case: tuple[list[dict[str, Any]], list[int]],
) -> None:
    """Whatever the arrival order and batch cuts: per day, week, month and quarter, the union
    of the period's repeat-buyer sets is exactly the customers with two or more on-time
    purchases in it, and the buyers set those with one or more."""
    state = SubscriptionState()
    handlers = {**state.handlers()}
    account = AccountsFold().account_event

    def both(e: Any, minute: int, deltas: Any) -> None:
        account(e, minute, deltas)
        state.subscription(e, minute, deltas)

    handlers["purchase"] = both
    out = run_keyed(state, handlers, *case, partitions=PARTITIONS, lateness_ms=LATENESS)
    for g, code in (("day", "d"), ("week", "w"), ("month", "mo"), ("quarter", "q")):
        per_period: dict[int, Counter[str]] = {}
        for e in out.on_time:
            start = window_start(e["ts"], g, UTC)
            per_period.setdefault(start, Counter())[e["user_id"]] += 1
        for start, bought in per_period.items():
            end = window_end(start, g, UTC)

            def members(name: str, start: int = start, end: int = end) -> set[str]:
                return {u for m, n, u in out.users if n == name and start <= m < end}

            assert members(accounts.REPEAT_BUYERS + code) == {
                u for u, n in bought.items() if n >= 2
            }
            assert members(accounts.BUYERS) == set(bought)
