"""Compare every catalog metric read back from Redis with the batch reference."""

from __future__ import annotations

from typing import Any

from stream.engine import store
from stream.engine.keys import Keys
from stream.engine.windows import Windows
from stream.metrics.catalog import CATALOG
from stream.metrics.reader import Reader
from stream.query import run_query
from stream.settings import Settings
from tests.support.reference import Reference

HLL = {"active_users", "dau", "wau", "mau", "feature_users"}
HLL_RATIOS = {"stickiness", "feature_adoption"}


def close(metric: str, got: float | None, want: float | None) -> bool:
    if want is None or got is None:
        return got is want
    if metric in HLL:
        return abs(got - want) <= max(0.02 * want, 1.0)  # HLL: within 2 % (and ±1 when tiny)
    if metric in HLL_RATIOS:
        return abs(got - want) <= 0.04 * abs(want) + 1e-9
    return abs(got - want) < 1e-9


def filter_sets(ref: Reference, metric: str) -> list[dict[str, str]]:
    spec = CATALOG[metric]
    sets: list[dict[str, str]] = [{}]
    if "campaign" in spec.dimensions:
        pairs = sorted(ref.campaigns())
        sets += [{"campaign": c} for c in sorted({c for c, _ in pairs})]
        sets += [{"campaign": c, "placement": p} for c, p in pairs[:6]]
    if "feature" in spec.dimensions:
        sets += [{"feature": f} for f in sorted(ref.features())]
    if "page" in spec.dimensions:
        sets += [{"page": p} for p in sorted(ref.tracked_pages)]
    if "type" in spec.dimensions:
        sets += [{"type": t} for t in ("page_view", "click", "like", "nps_response")]
    return sets


async def compare_all(
    settings: Settings, ref: Reference, granularities: tuple[str, ...] = ("hour", "day")
) -> list[str]:
    """Every metric × granularity × filter over the reference's windows; returns mismatches."""
    client = store.connect(settings.redis_url)
    reader = Reader(client, Keys(settings.key_prefix))
    windows = Windows(settings.zone)
    problems: list[str] = []
    checked = 0
    try:
        for metric, spec in CATALOG.items():
            for g in granularities:
                if g not in spec.granularities:
                    continue
                starts = ref.windows(g)
                if not starts:
                    continue
                for filters in filter_sets(ref, metric):
                    params: dict[str, Any] = {
                        "granularity": g,
                        "start": str(starts[0]),
                        "end": str(windows.end_of(g, starts[-1])),
                        **filters,
                    }
                    body = await run_query(
                        metric, params, reader, windows, frozenset(settings.tracked_pages)
                    )
                    for point, start in zip(
                        body["points"],
                        windows.iter_starts(g, starts[0], windows.end_of(g, starts[-1])),
                        strict=True,
                    ):
                        want = ref.value(metric, g, start, filters)
                        got = point["value"]
                        checked += 1
                        if not close(metric, got, want):
                            problems.append(
                                f"{metric} {g} {point['start']} {filters}: got {got}, want {want}"
                            )
    finally:
        await client.aclose()
    assert checked > 0
    return problems
