"""The score's configuration model: activities and their weights, targets, lookbacks or
half-lives, the home family, and the bands a score falls in.

Its own module because everything else in the score depends on it and it depends on nothing
there but the decay unit (:mod:`stream.metrics.score.decay`): the wiring builds
:class:`ScoreRules` from the settings, the keyed state and the read side name its bands and the
home family, and :mod:`stream.metrics.score.evaluation` computes with it. The derived tables
the hot path needs (integer weights, per-activity lookbacks, decay factors, caps, the
event-type index) are cached on the rules object: computed once per configuration, not per
customer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from stream.contract.types import FAMILY_OF, EventType, Family
from stream.metrics.business_hours import BusinessHours
from stream.metrics.score.decay import DECAY_CAP, ONE, decay_factor

__all__ = [
    "AT_RISK",
    "BANDS",
    "ENGAGED",
    "HIGHLY",
    "HOME_FAMILY",
    "SCORE_BOUNDS",
    "Activity",
    "ScoreRules",
    "band_of",
    "bucket_label",
]

#: The family whose partitions host customer state. Each family has its own topic and an
#: exactly-once apply is per input partition, so one customer's score can only be decided where
#: its events arrive together: other families' score inputs are relayed into the home topic
#: (stream/engine/relay.py); a family not relayed has "missing" factors (docs/architecture.md).
HOME_FAMILY = Family.CLICKSTREAM.value

_KNOWN = frozenset(t.value for t in EventType)
AT_RISK, ENGAGED, HIGHLY = "at_risk", "engaged", "highly"
BANDS = (AT_RISK, ENGAGED, HIGHLY)
#: Upper bounds of the score-distribution buckets (a score s counts in the first bound >= s).
SCORE_BOUNDS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def band_of(score: int) -> str:
    if score <= 40:
        return AT_RISK
    return ENGAGED if score <= 75 else HIGHLY


def bucket_label(score: int) -> str:
    """The score-distribution bucket (its upper bound) of a score."""
    return str(next(b for b in SCORE_BOUNDS if score <= b))


@dataclass(frozen=True)
class Activity:
    name: str
    events: frozenset[str]
    weight: int
    target: int
    lookback_buckets: int | None = None  # None: the rules' lookback
    half_life_buckets: int = 0  # > 0: decay with this half-life instead of a lookback

    @property
    def decays(self) -> bool:
        return self.half_life_buckets > 0

    @property
    def cap(self) -> int:
        """Most events one bucket needs to hold: more cannot change any score."""
        return DECAY_CAP * self.target if self.decays else self.target

    @property
    def unit(self) -> int:
        """What one event adds to the activity's amount (fixed point when it decays)."""
        return ONE if self.decays else 1


@dataclass(frozen=True)
class ScoreRules:
    activities: tuple[Activity, ...]
    bucket_ms: int = 86_400_000
    lookback_buckets: int = 30
    drop_points: int = 20
    drop_buckets: int = 7
    health_weights: tuple[int, int, int] = (60, 25, 15)  # engagement, feedback, support
    reply_target_ms: int = 8 * 3_600_000
    #: the lowest CSAT answer (``csat_scale``): 1 on 1–5, 0 on 0–5
    csat_min: int = 1
    #: families whose events reach the score: the home family and the relayed ones
    home_families: frozenset[str] = frozenset({HOME_FAMILY})
    #: with the business-hours mode on, the support part judges first replies (and its target)
    #: in business time, as the ticket metrics report them
    business_hours: BusinessHours | None = None

    def reply_ms(self, created_ms: int, replied_ms: int) -> int:
        """A first reply's time as the support part judges it."""
        if self.business_hours is None:
            return max(0, replied_ms - created_ms)
        return self.business_hours.business_ms(created_ms, replied_ms)

    @cached_property
    def _integer_weights(self) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        """Per activity the multiplier of min(amount, full), the amount ``full`` that saturates
        it, and the common denominator, so the score is exact integer arithmetic (per customer
        and boundary: Fraction was too slow)."""
        present = self.present()
        total = sum(a.weight for a, p in zip(self.activities, present, strict=True) if p)
        full = tuple(a.target * a.unit for a in self.activities)
        common = math.lcm(*full) if self.activities else 1
        mult = tuple(
            100 * a.weight * (common // f) if p else 0
            for a, f, p in zip(self.activities, full, present, strict=True)
        )
        return mult, full, common * total

    @cached_property
    def lookbacks(self) -> tuple[int, ...]:
        """Per activity its lookback in buckets (0 for a decayed one: it keeps no window)."""
        return tuple(
            0
            if a.decays
            else (self.lookback_buckets if a.lookback_buckets is None else a.lookback_buckets)
            for a in self.activities
        )

    @cached_property
    def max_lookback(self) -> int:
        return max(self.lookbacks, default=0)

    @cached_property
    def uniform_lookback(self) -> int | None:
        """The one lookback every activity has (the common case), else None."""
        distinct = set(self.lookbacks)
        return distinct.pop() if len(distinct) == 1 and not self.decays else None

    @cached_property
    def decays(self) -> bool:
        return any(a.decays for a in self.activities)

    @cached_property
    def factors(self) -> tuple[int, ...]:
        """Per activity its decay factor per bucket (0 for a lookback activity)."""
        return tuple(decay_factor(a.half_life_buckets) if a.decays else 0 for a in self.activities)

    @cached_property
    def caps(self) -> tuple[int, ...]:
        return tuple(a.cap for a in self.activities)

    @cached_property
    def index(self) -> dict[str, list[int]]:
        """Event type -> the activities it counts for."""
        out: dict[str, list[int]] = {}
        for i, a in enumerate(self.activities):
            for e in a.events:
                out.setdefault(e, []).append(i)
        return out

    @cached_property
    def _present(self) -> tuple[bool, ...]:
        return tuple(
            any(
                FAMILY_OF[EventType(e)].value in self.home_families for e in a.events if e in _KNOWN
            )
            for a in self.activities
        )

    def present(self) -> tuple[bool, ...]:
        """Per activity: can any of its events reach the score (else: a missing factor)?"""
        return self._present

    def score(self, amounts: Sequence[int]) -> int:
        """The score of the amounts: counts in the lookback, fixed-point decayed amounts."""
        mult, full, denominator = self._integer_weights
        if not denominator:
            return 0
        num = sum(m * min(c, f) for m, c, f in zip(mult, amounts, full, strict=True))
        return (2 * num + denominator) // (2 * denominator)  # round half up
