"""The business gauges on ``/metrics``: every metric spec that has a gauge, evaluated at scrape
time for the current windows, plus each family's label breakdowns (:mod:`stream.metrics.export`)
and the customer-score gauges.

The values come from the same specs as the HTTP API's, read through one snapshot reader per
scrape, so each stored window is read once however many metrics use it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from stream.engine.windows import Windows
from stream.metrics.catalog import CATALOG, EXPORTS
from stream.metrics.export import ExportContext, export_specs
from stream.metrics.reader import Reader
from stream.metrics.score import read as score_read
from stream.metrics.spec import MetricOptions

__all__ = ["BusinessExporter"]


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class BusinessExporter:
    def __init__(
        self,
        reader: Reader,
        windows: Windows,
        granularities: Iterable[str],
        max_label_values: int,
        options: MetricOptions | None = None,
    ) -> None:
        self.reader = reader
        self.windows = windows
        self.limit = max_label_values
        self.options = dataclasses.replace(
            options or MetricOptions(), granularities=tuple(granularities)
        )

    async def families(self, now: float | None = None) -> list[Metric]:
        ctx = ExportContext(
            self.reader.snapshot(),
            self.windows,
            self.options,
            self.limit,
            time.time() if now is None else now,
        )
        await export_specs(ctx, CATALOG.values())
        for export in EXPORTS:
            await export(ctx)
        if not self.options.score:
            return list(ctx.families.values())
        return [*ctx.families.values(), *await score_read.gauge_families(self.reader)]

    async def render(self, worker_registry: CollectorRegistry) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Static(await self.families()))
        return generate_latest(worker_registry) + generate_latest(registry)
