"""Duration buckets (stream/metrics/buckets.py): the scheme, its error bound, old fields, and the
medians and Prometheus histograms read from them.

The scheme is checked exhaustively over 0..10^7 s, and against the independent implementation
of the documented rule in tests/support/bucket_reference.py, which the batch references use for
their medians (so that stream == reference stays an exact comparison).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import pairwise
from typing import cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stream.engine.windows import Windows
from stream.metrics.buckets import (
    EXACT_BELOW,
    MAX_RELATIVE_ERROR,
    bucket_counts,
    bucket_field,
    bucket_of,
    bucket_span,
    field_bucket,
)
from stream.metrics.catalog import CATALOG
from stream.metrics.export import ExportContext, histogram_buckets
from stream.metrics.reader import Reader
from stream.metrics.sessions import DURATION_BUCKETS
from stream.metrics.sessions import export as export_sessions
from stream.metrics.spec import MetricOptions, Query, Value, evaluate
from stream.metrics.support import TIME_BUCKETS
from tests.support.bucket_reference import LOWERS, bucketed_median, field_suffix, reported

TOP = 10**7
# 1/64, as the integer inequality |r − s| × 64 ≤ s (no float rounding in the check).
DIVISOR = 64
assert MAX_RELATIVE_ERROR == 1 / DIVISOR


@pytest.mark.slow  # ten million seconds, one by one
def test_every_second_up_to_ten_million_is_in_its_bucket_within_the_bound() -> None:
    indexes = list(map(bucket_of, range(TOP + 1)))
    spans = [bucket_span(i) for i in range(indexes[-1] + 1)]
    assert len(spans) == 615  # 10^7 s is in bucket 614
    assert spans[0].lower == 0 and all(b.lower == a.upper + 1 for a, b in pairwise(spans))
    # Every second maps to the bucket whose span holds it: monotonic, no index skipped.
    tiled = [i for i, span in enumerate(spans) for _ in range(span.upper - span.lower + 1)]
    assert indexes == tiled[: TOP + 1]
    reps = [spans[i].representative for i in indexes]
    assert all(abs(r - s) * DIVISOR <= s for s, r in enumerate(reps))
    assert reps[:EXACT_BELOW] == list(range(EXACT_BELOW))  # exact below 64 s, as before
    assert reps[64] == 65 and reps[2**20] == 2**20 + 2**14  # the bound is reached: tight


def test_spans_tile_the_seconds_and_invert_bucket_of() -> None:
    previous_upper = -1
    for i in range(2_000):  # up to ~2^66 s
        lower, upper, rep = bucket_span(i)
        assert lower == previous_upper + 1 and lower <= rep <= upper
        assert bucket_of(lower) == bucket_of(upper) == i
        width = upper - lower + 1
        assert width == 1 or (width % 2 == 0 and rep == lower + width // 2)
        # 32 sub-buckets per power of two: width ≤ lower / 32 from 64 s on
        assert i < EXACT_BELOW or width * 32 <= lower
        previous_upper = upper


def test_the_stream_scheme_is_the_documented_one() -> None:
    """Same buckets and representatives as the reference's table (built from the written rule)."""
    for i, (lower, end) in enumerate(pairwise(LOWERS)):
        span = bucket_span(i)
        assert (span.lower, span.upper + 1) == (lower, end)
        assert span.representative == reported(lower) == reported(end - 1)
        assert bucket_field(lower) == field_suffix(lower) == f"b{i}"


def test_above_64_s_the_representative_is_within_the_bound_of_the_unrounded_duration() -> None:
    for i in range(EXACT_BELOW, 1_000):
        lower, upper, rep = bucket_span(i)
        # durations of lower.000 s up to upper.999 s are counted in this bucket
        for ms in (lower * 1000, (upper + 1) * 1000 - 1):
            assert abs(rep * 1000 - ms) * DIVISOR <= ms


def test_new_fields_are_marked_and_old_whole_second_fields_read_into_their_bucket() -> None:
    assert bucket_field(3600) == "b248" and bucket_field(59) == "b59"
    assert field_bucket("b248") == field_bucket("3600") == field_bucket("3647") == 248
    assert field_bucket("59") == field_bucket("b59") == 59
    hist = {
        "all|3600": 2,  # before the upgrade
        "all|3610": 1,  # same bucket as 3600
        "all|b248": 4,  # after it
        "all|b59": 1,
        "all|59": 1,
        "platform|web|b248": 9,  # another slice
        # a ticket time recorded before the upgrade, taken back (re-solve) after it
        "all|7200": 1,
        "all|b" + str(bucket_of(7200)): -1,
    }
    assert bucket_counts(hist, "all|") == {248: 7, 59: 2}


# ---- medians through the metric specs (the API's and `stream query`'s evaluation) ----------


class HashReader:
    """Just enough of a Reader for the duration specs: one hash per window, one shard."""

    def __init__(
        self, hashes: list[dict[str, int]], counters: dict[str, int] | None = None
    ) -> None:
        self._hashes = hashes
        self._counters = counters or {}

    async def shards(self, families: object = None) -> list[str]:
        return ["s.0"]

    async def hashes(
        self, shards: list[str], granularity: str, starts: list[int], name: str
    ) -> list[dict[str, int]]:
        assert len(starts) == len(self._hashes)
        return [dict(h) for h in self._hashes]

    async def counters(
        self, shards: list[str], granularity: str, starts: list[int]
    ) -> list[dict[str, int]]:
        return [dict(self._counters) for _ in starts]


UTC = Windows(ZoneInfo("UTC"))


def medians(metric: str, hashes: list[dict[str, int]], filters: dict[str, str]) -> list[Value]:
    query = Query("hour", list(range(len(hashes))), filters, UTC, MetricOptions())
    return asyncio.run(evaluate(CATALOG[metric], query, cast(Reader, HashReader(hashes))))


def test_medians_of_old_new_and_mixed_windows() -> None:
    secs = [5, 70, 3600, 3610, 90_000]
    new = dict(Counter(f"all|{bucket_field(s)}" for s in secs))  # 3600 and 3610 share one
    old = {f"all|{s}": 1 for s in secs}
    mixed = {"all|5": 1, "all|b" + str(bucket_of(70)): 1, "all|3600": 1, "all|3610": 1,
             "all|b" + str(bucket_of(90_000)): 1}  # fmt: skip
    want = bucketed_median(secs)
    assert want == 3616.0  # bucket 3584–3647
    assert medians("session_duration_median", [new, old, mixed, {}], {}) == [want] * 3 + [None]
    # even count: the mean of the two middle representatives (exact below 64 s)
    assert medians("session_duration_median", [{"all|b10": 1, "all|b21": 1}], {}) == [15.5]


def test_ticket_medians_read_their_measure_and_slice_only() -> None:
    hist = {
        "frt|all|b" + str(bucket_of(600)): 3,
        "frt|channel|email|600": 1,  # old field of one channel
        "frt|channel|email|b" + str(bucket_of(1200)): 2,
        "frt_bh|all|b1": 5,  # the business-hours measure
        "fres|all|b2": 5,
    }
    assert medians("first_reply_time_median", [hist], {}) == [bucketed_median([600] * 3)]
    assert medians("first_reply_time_median", [hist], {"channel": "email"}) == [
        bucketed_median([600, 1200, 1200])
    ]


durations = st.lists(
    st.one_of(st.integers(0, 130), st.integers(0, 100_000), st.integers(0, TOP)),
    min_size=1,
    max_size=40,
)


@given(durations, st.lists(st.booleans(), min_size=40, max_size=40), st.sampled_from(["", "web"]))
@example([64, 64], [False] * 40, "")  # the worst case: reported 65 for an exact 64
@example([63, 64], [True] * 40, "web")
def test_stored_median_is_the_reference_bucket_median_within_the_bound(
    secs: list[int], old: list[bool], platform: str
) -> None:
    """Any durations, stored as new bucket fields or (some) old whole-second fields: the spec's
    median equals the independent reference's, which is within 1/64 of the exact median."""
    prefix = f"platform|{platform}|" if platform else "all|"
    hist: dict[str, int] = {"channel|paid|b1": 1}  # another slice: never counted
    for s, as_old in zip(secs, old, strict=False):
        name = prefix + (str(s) if as_old else bucket_field(s))
        hist[name] = hist.get(name, 0) + 1
    filters = {"platform": platform} if platform else {}
    (got,) = medians("session_duration_median", [hist], filters)
    assert got == bucketed_median(secs)  # asserts |got − exact median| ≤ exact median / 64


# ---- Prometheus histograms ------------------------------------------------------------------


@given(st.lists(st.integers(0, 10 * 86_400), max_size=60))
@example([60, 61, 63, 64, 179, 180, 181, 183, 184, 3599, 3600, 86_399, 86_400, 86_401])
def test_histogram_bounds_are_exact_below_64_s_and_conservative_above(secs: list[int]) -> None:
    counts: dict[int, int] = {}
    for s in secs:
        counts[bucket_of(s)] = counts.get(bucket_of(s), 0) + 1
    for bounds in (DURATION_BUCKETS, TIME_BUCKETS):
        exported = histogram_buckets(counts, bounds)
        assert exported[-1] == ("+Inf", float(len(secs)))
        for (le, n), b in zip(exported, bounds, strict=False):
            assert le == str(float(b))
            at_most = sum(1 for s in secs if s <= b)  # le semantics: whole seconds ≤ b
            if b < EXACT_BELOW or bucket_span(bucket_of(b)).upper == b:
                assert n == at_most  # a bucket boundary: exact, as before the buckets
            else:  # never counts a duration above b; misses only those within b/32 below it
                assert sum(1 for s in secs if s * 32 <= b * 31) <= n <= at_most
                assert n == sum(1 for s in secs if s < bucket_span(bucket_of(b)).lower)
        cumulative = [n for _, n in exported]
        assert cumulative == sorted(cumulative)


def test_session_export_reads_old_and_new_fields_into_the_histogram() -> None:
    hist = {"all|b" + str(bucket_of(30)): 1, "all|45": 1, "all|b" + str(bucket_of(3000)): 1,
            "all|3000": 1, "platform|web|b3": 5}  # fmt: skip
    reader = HashReader([hist], {"ses.n": 4, "ses.ms": 6_075_500})
    ctx = ExportContext(cast(Reader, reader), UTC, MetricOptions(), 50, now=1_767_225_600)
    asyncio.run(export_sessions(ctx))
    family = ctx.families["engagement_session_duration_seconds"]
    day = {
        x.labels["le"]: x.value
        for x in family.samples
        if x.name.endswith("_bucket") and x.labels["window"] == "day"
    }
    assert day["30.0"] == 1 and day["60.0"] == 2 and day["1800.0"] == 2
    assert day["3600.0"] == 4 and day["+Inf"] == 4
    gsum = [x.value for x in family.samples if x.name.endswith("_gsum")]
    assert gsum[0] == 6_075.5  # exact: from the ms counter, not from the buckets
