"""Survey metrics: NPS, CSAT and CES per window and touchpoint. Fold side, pure.

Counter fields (``<survey>.<measure>|<touchpoint>``, touchpoint from a bounded set):

    nps.n  answers     nps.pro  promoters (9–10)       nps.det  detractors (0–6)
    csat.n answers     csat.top top-2 box (4–5 of 1–5)
    ces.n  answers     ces.sum  sum of scores (1–7)    ces.hi   answers 5–7

Only counts are stored, so the scores are exact ratios of sums at read time (any window, any
touchpoint subset) and a window without answers reads as null, never 0. Scores outside their
scale never get here: the decoder rejects them (``out_of_range``).
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.contract.decode import Event
from stream.contract.types import EventType, Family
from stream.engine.deltas import Deltas
from stream.engine.fold import Handler
from stream.engine.keys import field
from stream.metrics.compute import counter_spec, sums_spec
from stream.metrics.export import ExportContext, grouped, labelled, sums_by_group
from stream.metrics.labels import BoundedLabels
from stream.metrics.spec import Gauge, MetricSpec, Sums, Value, ratio

__all__ = ["DIMENSIONS", "SPECS", "FeedbackFold", "export", "nps"]

DIMENSIONS = ("touchpoint",)
FEEDBACK = (Family.FEEDBACK.value,)
SURVEYS = ("nps", "csat", "ces")
NPS_N, NPS_PROMOTERS, NPS_DETRACTORS = "nps.n", "nps.pro", "nps.det"
CSAT_N, CSAT_TOP = "csat.n", "csat.top"
CES_N, CES_SUM, CES_HIGH = "ces.n", "ces.sum", "ces.hi"


def nps(answers: int, promoters: int, detractors: int) -> float | None:
    """% promoters − % detractors, −100..100; passives only in the denominator."""
    if not answers:
        return None
    return (promoters - detractors) / answers * 100


def score_measures(event_type: str, score: int) -> Mapping[str, int]:
    """The counter increments one answer contributes (besides ``<survey>.n``)."""
    if event_type == EventType.NPS_RESPONSE:
        return {NPS_PROMOTERS: int(score >= 9), NPS_DETRACTORS: int(score <= 6)}
    if event_type == EventType.CSAT_RESPONSE:
        return {CSAT_TOP: int(score >= 4)}
    return {CES_SUM: score, CES_HIGH: int(score >= 5)}


_SURVEY = {
    EventType.NPS_RESPONSE.value: NPS_N,
    EventType.CSAT_RESPONSE.value: CSAT_N,
    EventType.CES_RESPONSE.value: CES_N,
}


class FeedbackFold:
    def __init__(self, touchpoints: BoundedLabels) -> None:
        self.touchpoints = touchpoints

    def handlers(self) -> dict[str, Handler]:
        return {t: self.response for t in _SURVEY}

    def response(self, event: Event, minute: int, deltas: Deltas) -> None:
        props = event.props
        tp = self.touchpoints(props.touchpoint)
        deltas.count(minute, field(_SURVEY[event.type], tp))
        for name, n in score_measures(event.type, props.score or 0).items():
            if n:
                deltas.count(minute, field(name, tp), n)


# ---- read side ---------------------------------------------------------------------------


def _percent(part: float, whole: float) -> Value:
    return ratio(part, whole, 100)


def _nps(answers: float, promoters: float, detractors: float) -> Value:
    return nps(int(answers), int(promoters), int(detractors))


def _survey_spec(name: str, description: str, unit: str, sums: Sums, gauge: Gauge) -> MetricSpec:
    return sums_spec(name, description, unit, sums, FEEDBACK, DIMENSIONS, gauge=gauge)


NPS = _survey_spec(
    "nps",
    "Net Promoter Score: % promoters (9–10) − % detractors (0–6), −100..100.",
    "score",
    Sums((NPS_N, NPS_PROMOTERS, NPS_DETRACTORS), _nps),
    Gauge("engagement_nps", "Net Promoter Score (−100..100).", "settled"),
)
CSAT = _survey_spec(
    "csat",
    "CSAT: answers 4–5 / answers × 100 (1–5 scale).",
    "percent",
    Sums((CSAT_TOP, CSAT_N), _percent),
    Gauge("engagement_csat_ratio", "CSAT: answers 4–5 / answers.", "settled", 0.01),
)
CES = _survey_spec(
    "ces",
    "Customer Effort Score: mean answer (1–7 agreement scale).",
    "score",
    Sums((CES_SUM, CES_N), ratio),
    Gauge("engagement_ces_score", "Mean CES answer (1–7).", "settled"),
)
CES_AGREE = _survey_spec(
    "ces_agree_rate",
    "CES answers 5–7 / answers × 100.",
    "percent",
    Sums((CES_HIGH, CES_N), _percent),
    Gauge("engagement_ces_agree_ratio", "CES answers 5–7 / answers.", "settled", 0.01),
)
SCORES = (NPS, CSAT, CES, CES_AGREE)

SPECS = [
    *SCORES,
    *(
        counter_spec(
            f"{survey}_responses", f"{survey.upper()} answers.", f"{survey}.n", FEEDBACK, DIMENSIONS
        )
        for survey in SURVEYS
    ),
]


async def export(ctx: ExportContext) -> None:
    """Answers and scores by touchpoint (capped by answers; ``other`` scores the folded ones)."""
    for label, g, start in ctx.spans("settled"):
        window = str(label)
        fields = await ctx.counters(FEEDBACK, g, start)
        answers = {s: labelled(fields, f"{s}.n") for s in SURVEYS}
        touchpoints = {k for per in answers.values() for k in per}
        weights = {k: sum(per.get(k, 0.0) for per in answers.values()) for k in touchpoints}
        groups = ctx.groups(weights)
        responses = ctx.gauge(
            "engagement_survey_responses", "Survey answers.", ["window", "survey", "touchpoint"]
        )
        for survey, per in answers.items():
            for (tp,), n in grouped(per, groups).items():
                responses.add_metric([window, survey, tp], n)
        for spec in SCORES:
            assert spec.gauge is not None
            gauge = spec.gauge
            for (tp,), value in sums_by_group(spec, fields, groups).items():
                if value is not None:
                    ctx.gauge(
                        gauge.name + "_by_touchpoint", gauge.help, ["window", "touchpoint"]
                    ).add_metric([window, tp], value * gauge.scale)
