"""Customer engagement score, health score and churn risk: one package, cut along its seams.

* :mod:`~stream.metrics.score.decay` -- the fixed-point half-life arithmetic, to the bit;
* :mod:`~stream.metrics.score.rules` -- the configuration model: activities, weights, bands,
  the home family;
* :mod:`~stream.metrics.score.evaluation` -- the pure math: scores, contributions, health,
  transitions and due times of one customer;
* :mod:`~stream.metrics.score.pending` -- merging activity between two evaluations (the
  reference of the apply's op A);
* :mod:`~stream.metrics.score.codec` -- the stored value of one customer, encoded and decoded;
* :mod:`~stream.metrics.score.state` -- :class:`ScoreState`, the engine keyed state;
* :mod:`~stream.metrics.score.read` -- the read side: lookups, the at-risk ranking, gauges.

Each module imports only modules above it in that list, so the math is tested and reasoned
about without Redis or the engine. This module re-exports what the rest of ``stream`` uses
(wiring, serving, the service, the CLI and tools), so they do not depend on the internal cut;
the tests of the internals import the submodules themselves.
"""

from __future__ import annotations

from stream.metrics.score import read
from stream.metrics.score.rules import HOME_FAMILY, Activity, ScoreRules
from stream.metrics.score.state import AT_RISK_SET, OUTBOX, STATE, TOTALS, ScoreState

__all__ = [
    "AT_RISK_SET",
    "HOME_FAMILY",
    "OUTBOX",
    "STATE",
    "TOTALS",
    "Activity",
    "ScoreRules",
    "ScoreState",
    "read",
]
