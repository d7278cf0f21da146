"""Every queryable metric, by name, and every family's export: the families' specs in one table.

Each family module owns its field names, its fold, its specs and its Prometheus export; this
module only lists them, so the HTTP API, ``stream query`` and the exporter see the same
definitions (:mod:`stream.metrics.spec`).
"""

from __future__ import annotations

from stream.metrics import accounts, activity, clickstream, feedback, sessions, social, support
from stream.metrics.export import Export
from stream.metrics.spec import MetricSpec

__all__ = ["CATALOG", "EXPORTS"]

CATALOG: dict[str, MetricSpec] = {
    spec.name: spec
    for family in (activity, clickstream, sessions, support, feedback, social, accounts)
    for spec in family.SPECS
}

#: The families' own export code (label breakdowns, histograms), run after the specs' gauges.
EXPORTS: tuple[Export, ...] = (
    activity.export,
    clickstream.export,
    sessions.export,
    support.export,
    feedback.export,
    social.export,
)
