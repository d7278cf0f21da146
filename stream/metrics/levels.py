"""Levels — a quantity at an instant (followers, customers) — from a running total and windows.

Window counters give what changed *within* a window; a level needs everything before it. Keeping
a level per window would need the events in order, so instead every change also moves a running
total that never expires (``Deltas.total``), and the level at instant t is

    total − Σ changes in the windows tiling [t, horizon)

where the tiling goes from t's granularity up to days as soon as it is aligned (minutes to the
hour, hours to the day, then days; a calendar period starts at a day's start) and the horizon is
past any accepted event time. Both terms
are plain sums, so the result does not depend on arrival order, batch cuts or sharding.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

from stream.engine.windows import GRANULARITIES, Windows
from stream.metrics.reader import Reader

__all__ = ["Window", "levels"]

Window = tuple[str, int]


def tiling(
    windows: Windows, granularities: Sequence[str], granularity: str, start: int, horizon: int
) -> list[Window]:
    """Windows that exactly tile [start, end of the day containing ``horizon``)."""
    kept = [g for g in GRANULARITIES if g in granularities]
    # A calendar period starts at a local midnight: tiled by days from its start.
    stored = granularity if granularity in GRANULARITIES else "day"
    out: list[Window] = []
    t = start
    for finer, coarser in itertools.pairwise(kept):
        if kept.index(finer) < kept.index(stored):
            continue
        while windows.start_of(coarser, t) != t:
            out.append((finer, t))
            t = windows.end_of(finer, t)
    last = windows.start_of("day", horizon)
    while t <= last:
        out.append(("day", t))
        t = windows.end_of("day", t)
    return out


async def levels(
    reader: Reader,
    shards: list[str],
    windows: Windows,
    granularities: Sequence[str],
    granularity: str,
    starts: list[int],
    total: float,
    change: Callable[[dict[str, int]], float],
    horizon_s: float,
) -> list[tuple[float, float]]:
    """For each window start: (level at the start, change within the window)."""
    horizon = int(time.time() + horizon_s)
    tilings = [tiling(windows, granularities, granularity, s, horizon) for s in starts]
    wanted: dict[str, set[int]] = {granularity: set(starts)}
    for tiles in tilings:
        for g, s in tiles:
            wanted.setdefault(g, set()).add(s)
    changes: dict[Window, float] = {}
    for g, window_starts in wanted.items():
        ordered = sorted(window_starts)
        for s, fields in zip(ordered, await reader.counters(shards, g, ordered), strict=True):
            changes[(g, s)] = change(fields)
    out = []
    for s, tiles in zip(starts, tilings, strict=True):
        since = sum(changes[w] for w in tiles)
        out.append((total - since, changes[(granularity, s)]))
    return out
