"""The benchmark's verdicts: every bar is judged on the mix that was run, and says which."""

from __future__ import annotations

import pytest

from stream.tools.bench_report import BenchResult, report


def _result(mix: str, events_per_s: float) -> BenchResult:
    return BenchResult(
        events=1000,
        mix=mix,
        users=10,
        partitions=4,
        raw_loop_events_per_s=events_per_s * 2,
        worker_events_per_s=events_per_s,
        ratio_to_raw=0.5,
        latency_p99_s=0.2,
        worker_peak_rss_mb=100,
        redis_bytes_per_open_session=100,
        redis_bytes_per_scored_customer=100,
    )


def _verdict(text: str, label_start: str) -> str:
    (line,) = [ln for ln in text.splitlines() if label_start in ln]
    return line.split()[0]


@pytest.mark.parametrize("mix", ["clickstream", "all"])
def test_throughput_bar_is_judged_and_labelled_on_the_mix_run(mix: str) -> None:
    slow = report(_result(mix, 60_000))
    assert _verdict(slow, "worker events/s") == "FAIL"
    assert f"{mix} mix" in next(ln for ln in slow.splitlines() if "worker events/s" in ln)
    assert _verdict(report(_result(mix, 120_000)), "worker events/s") == "PASS"


def test_ratio_bar() -> None:
    low = _result("clickstream", 120_000)
    low.ratio_to_raw = 0.3
    assert _verdict(report(low), "ratio to raw") == "FAIL"
    assert _verdict(report(_result("clickstream", 120_000)), "ratio to raw") == "PASS"


def test_event_time_span_is_max_minus_min_whatever_the_order() -> None:
    import orjson

    from stream.contract.types import Family
    from stream.tools.bench import event_time_span_ms

    rows = [(Family.CLICKSTREAM, b"u", orjson.dumps({"ts": ts})) for ts in (5_000, 1_000, 9_000)]
    assert event_time_span_ms(rows) == 8_000
    assert event_time_span_ms([]) == 0


def test_the_verdicts_say_which_per_user_states_were_kept_and_skip_the_ones_that_were_not() -> None:
    on = report(_result("clickstream", 120_000))
    assert "sessions on, scores on" in next(ln for ln in on.splitlines() if "events/s (bar" in ln)
    assert "per open session" in on and "per scored customer" in on
    lean = _result("clickstream", 120_000)
    lean.sessions = lean.score = False
    off = report(lean)
    assert "sessions off, scores off" in next(
        ln for ln in off.splitlines() if "events/s (bar" in ln
    )
    assert "per open session" not in off and "per scored customer" not in off
