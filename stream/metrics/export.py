"""Prometheus export of the metric specs: the shared machinery the families' export code uses.

The truth lives in Redis, so every worker exports the same global view of the *current* windows
(wall clock, in the deployment's time zone) — scraping N workers gives N identical copies, never
a partial or double count (aggregate with ``max`` in PromQL). Ratios are 0..1 ``_ratio`` gauges
(Prometheus base units); the HTTP API gives the percent forms.

Every value comes from a spec: a spec with a :class:`~stream.metrics.spec.Gauge` is evaluated by
:func:`export_specs`; label breakdowns (per campaign, touchpoint, platform …) are each family's
``export`` function, which applies the spec's own :class:`~stream.metrics.spec.Sums` formula to
label groups. Label hygiene: only bounded label sets, capped at ``max_label_values`` per metric:
the largest series are kept and the rest fold into ``other``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from stream.engine.keys import FIELD_SEP, unescape
from stream.engine.windows import Windows
from stream.metrics.buckets import bucket_span
from stream.metrics.labels import OTHER
from stream.metrics.reader import Reader
from stream.metrics.spec import GaugeWindows, MetricOptions, MetricSpec, Query, Value

__all__ = [
    "OTHER",
    "Export",
    "ExportContext",
    "Labels",
    "cap_labels",
    "export_specs",
    "fold_labels",
    "grouped",
    "histogram_buckets",
    "labelled",
    "sums_by_group",
]

Labels = tuple[str, ...]
#: One window a gauge is exported for: (``window`` label or None, granularity, start).
Span = tuple[str | None, str, int]


def cap_labels(values: dict[Labels, float], limit: int) -> dict[Labels, float]:
    """Keep the ``limit`` largest series; fold the rest into one ``other`` series."""
    if len(values) <= limit:
        return values
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    width = len(ranked[0][0])
    other = (OTHER,) * width
    # A real value may itself be spelled "other": add to it instead of overwriting it.
    kept[other] = kept.get(other, 0.0) + sum(v for _, v in ranked[limit - 1 :])
    return kept


def fold_labels(weights: dict[Labels, float], limit: int) -> dict[Labels, set[Labels]]:
    """Capping decisions as groups: kept label (or ``other``) -> the labels it stands for."""
    if not weights:
        return {}
    kept = set(cap_labels(weights, limit))
    width = len(next(iter(weights)))
    groups: dict[Labels, set[Labels]] = {}
    for labels in weights:
        groups.setdefault(labels if labels in kept else (OTHER,) * width, set()).add(labels)
    return groups


def labelled(fields: dict[str, int], prefix: str) -> dict[Labels, float]:
    """``<prefix>|<label>[|<label>…]`` counters as {(label, …): value}."""
    head = prefix + FIELD_SEP
    out: dict[Labels, float] = {}
    for name, value in fields.items():
        if name.startswith(head):
            key = tuple(unescape(p) for p in name[len(head) :].split(FIELD_SEP))
            out[key] = out.get(key, 0.0) + value
    return out


def grouped(values: dict[Labels, float], groups: dict[Labels, set[Labels]]) -> dict[Labels, float]:
    return {kept: sum(values.get(k, 0.0) for k in members) for kept, members in groups.items()}


def sums_by_group(
    spec: MetricSpec,
    fields: dict[str, int],
    groups: dict[Labels, set[Labels]],
) -> dict[Labels, Value]:
    """The spec's :class:`Sums` formula on each label group (the ``other`` group sums several
    labels before the formula, so its ratio is the ratio of the sums, as for any filter)."""
    assert spec.sums is not None, f"{spec.name} is not a formula over counter sums"
    per_field = [labelled(fields, f) for f in spec.sums.fields]
    out: dict[Labels, Value] = {}
    for kept, members in groups.items():
        sums = [sum(values.get(k, 0.0) for k in members) for values in per_field]
        out[kept] = spec.sums.combine(*sums)
    return out


def histogram_buckets(counts: dict[int, int], bounds: Iterable[float]) -> list[tuple[str, float]]:
    """Cumulative gauge-histogram buckets of durations counted per duration bucket (index ->
    count, :mod:`stream.metrics.buckets`), whole seconds as before the buckets: ``le=b`` counts
    the durations of ``b`` whole seconds or less.

    A duration bucket counts under ``le`` only when all of it is ≤ ``le`` (its upper second): a
    bound that is a bucket's upper second (every bound below 64 s) is exact; a bound inside a
    wider bucket is conservative — it leaves out that bucket's seconds ≤ ``le``, all within
    1/32 below ``le``, and never counts a duration above it. ``+Inf`` is the exact total.
    """
    uppers = [(bucket_span(i).upper, n) for i, n in counts.items()]
    buckets = [(str(float(b)), float(sum(n for upper, n in uppers if upper <= b))) for b in bounds]
    buckets.append(("+Inf", float(sum(counts.values()))))
    return buckets


@dataclass
class ExportContext:
    """One scrape: a reader that reads each stored key once, the windows exported, the series."""

    reader: Reader
    windows: Windows
    options: MetricOptions
    limit: int
    now: float
    families: dict[str, Metric] = field(default_factory=dict)

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = GaugeMetricFamily(name, doc, labels=labels)
        assert isinstance(fam, GaugeMetricFamily)
        return fam

    def histogram(self, name: str, doc: str, labels: list[str]) -> GaugeHistogramMetricFamily:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = GaugeHistogramMetricFamily(name, doc, labels=labels)
        assert isinstance(fam, GaugeHistogramMetricFamily)
        return fam

    def cap(self, values: dict[Labels, float]) -> dict[Labels, float]:
        return cap_labels(values, self.limit)

    def groups(self, weights: dict[Labels, float]) -> dict[Labels, set[Labels]]:
        return fold_labels(weights, self.limit)

    def spans(self, which: GaugeWindows, settled: bool = False) -> list[Span]:
        """The windows a gauge is exported for; ``settled``: of facts settled on the watermark
        (:attr:`MetricSpec.settled`), which have no minute series unless minute windows live
        past the settling delay."""
        day = self.windows.start_of("day", self.now)
        if which == "today":
            return [(None, "day", day)]
        if which == "month":
            return [("month", "month", self.windows.start_of("month", self.now))]
        kept = [
            g
            for g in self.options.granularities
            if not (settled and g == "minute" and not self.options.settled_minutes)
        ]
        out: list[Span] = [(g, g, self.windows.start_of(g, self.now)) for g in kept]
        if which == "settled":
            out.append(("previous_day", "day", self.windows.previous_days(day, 2)[-1]))
        return out

    def query(self, granularity: str, start: int) -> Query:
        return Query(granularity, [start], {}, self.windows, self.options, self.now)

    async def counters(
        self, families: tuple[str, ...] | None, g: str, start: int
    ) -> dict[str, int]:
        shards = await self.reader.shards(families)
        (fields,) = await self.reader.counters(shards, g, [start])
        return fields


#: A family's own export code: label breakdowns and histograms of its specs.
Export = Callable[[ExportContext], Awaitable[None]]


async def export_specs(ctx: ExportContext, specs: Iterable[MetricSpec]) -> None:
    """Every spec with a gauge, evaluated for its windows (the same evaluation as the API's)."""
    for spec in specs:
        gauge = spec.gauge
        if gauge is None or spec.unavailable(ctx.options) is not None:
            continue
        const_names = [name for name, _ in gauge.labels]
        const_values = [value for _, value in gauge.labels]
        for label, g, start in ctx.spans(gauge.windows, spec.settled):
            if g not in spec.granularities:
                continue
            (value,) = await spec.compute(ctx.query(g, start), ctx.reader)
            if value is None:
                continue
            window = [] if label is None else [label]
            names = ([] if label is None else ["window"]) + const_names
            ctx.gauge(gauge.name, gauge.help, names).add_metric(
                window + const_values, value * gauge.scale
            )
