"""CSAT on 1–5 (the default) or 0–5 (``csat_scale``): what the decoder accepts, what counts as
satisfied, and what an answer is worth in the health score."""

from __future__ import annotations

import orjson
import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_decoder, score_rules
from stream.contract.decode import Event, Rejection
from stream.contract.types import Reason
from stream.metrics import feedback
from stream.metrics.score.evaluation import feedback_part

NOW = 1_800_000_000_000


def answer(score: int) -> bytes:
    return orjson.dumps(
        {"event_id": "e", "type": "csat_response", "ts": NOW - 1000, "user_id": "u",
         "properties": {"score": score}}
    )  # fmt: skip


@pytest.mark.parametrize(("scale", "low"), [("1-5", 1), ("0-5", 0)])
def test_the_decoder_accepts_exactly_the_scale(scale: str, low: int) -> None:
    decoder = build_decoder(Settings(csat_scale=scale))
    for score in range(-2, 8):
        outcome = decoder.decode(answer(score), NOW)
        if low <= score <= 5:
            assert isinstance(outcome, Event), outcome
        else:
            assert isinstance(outcome, Rejection) and outcome.reason == Reason.OUT_OF_RANGE
            assert f"not in {low}..5" in outcome.detail


def test_the_default_scale_is_one_to_five_and_rejects_zero() -> None:
    assert Settings().csat_scale == "1-5"
    outcome = build_decoder(Settings()).decode(answer(0), NOW)
    assert isinstance(outcome, Rejection) and outcome.reason == Reason.OUT_OF_RANGE


def test_the_scale_is_an_environment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_CSAT_SCALE", "0-5")
    assert Settings().csat_min == 0


def test_zero_is_unsatisfied_and_four_and_five_are_satisfied() -> None:
    assert [feedback.score_measures("csat_response", s) for s in range(6)] == [
        {"csat.top": 0}, {"csat.top": 0}, {"csat.top": 0}, {"csat.top": 0},
        {"csat.top": 1}, {"csat.top": 1},
    ]  # fmt: skip


def test_the_health_score_spreads_either_scale_over_0_to_100() -> None:
    assert [feedback_part("csat_response", s, 1) for s in range(1, 6)] == [0, 25, 50, 75, 100]
    assert [feedback_part("csat_response", s, 0) for s in range(6)] == [0, 20, 40, 60, 80, 100]
    assert score_rules(Settings(csat_scale="0-5")).csat_min == 0
    assert score_rules(Settings()).csat_min == 1
