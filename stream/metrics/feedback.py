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

from collections.abc import Callable, Mapping

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas
from stream.engine.keys import field
from stream.metrics.labels import BoundedLabels

Handler = Callable[[Event, int, Deltas], None]
DIMENSIONS = ("touchpoint",)


def nps(answers: int, promoters: int, detractors: int) -> float | None:
    """% promoters − % detractors, −100..100; passives only in the denominator."""
    if not answers:
        return None
    return (promoters - detractors) / answers * 100


def score_measures(event_type: str, score: int) -> Mapping[str, int]:
    """The counter increments one answer contributes (besides ``<survey>.n``)."""
    if event_type == EventType.NPS_RESPONSE:
        return {"nps.pro": int(score >= 9), "nps.det": int(score <= 6)}
    if event_type == EventType.CSAT_RESPONSE:
        return {"csat.top": int(score >= 4)}
    return {"ces.sum": score, "ces.hi": int(score >= 5)}


_SURVEY = {
    EventType.NPS_RESPONSE.value: "nps.n",
    EventType.CSAT_RESPONSE.value: "csat.n",
    EventType.CES_RESPONSE.value: "ces.n",
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
