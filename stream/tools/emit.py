"""Drive the simulator into Kafka or a JSONL file: pacing, rate limits, stop conditions.

Live mode paces the simulated clock to the wall clock (events are published when their time
comes, so the demo's windows fill in real time). Events stamped in the past (a warm start) are
published at ``catch_up_speed`` times real time, in event-time order across topics, until the
simulated clock meets the wall clock: published all at once, the clickstream would carry the
home partitions' watermark minutes ahead of the relayed likes and email opens of the same
minutes, which the workers then reject as late (~9,000 dead letters on a demo start). Batch mode
publishes as fast as allowed but never past "now", so no event is rejected as coming from the
future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.contract.types import Family
from stream.tools.publish import BatchPublisher
from stream.tools.simulate import SimEvent

__all__ = ["EmitPlan", "publish", "release_time", "write_jsonl"]


@dataclass
class EmitPlan:
    count: int | None = None  # stop after this many events (None: no limit)
    rate: float | None = None  # max events/s (None: as fast as possible)
    live: bool = False  # pace to the wall clock
    stop_at_ms: int | None = None  # do not emit events stamped after this
    #: Live mode: event time runs this many times faster than the wall clock until it catches
    #: up (None: events stamped in the past are published at once).
    catch_up_speed: float | None = None


def release_time(ts_ms: int, first_ts_ms: int, started: float, speed: float | None) -> float:
    """Wall-clock second at which a live event stamped ``ts_ms`` may be published.

    Its own time, but no earlier than the moment a clock started at ``started`` from the first
    event's time and running ``speed`` times faster reaches it: events of the past are paced
    at ``speed``; once that clock meets the wall clock, events go out when their time comes.
    """
    own = ts_ms / 1000
    if speed is None:
        return own
    return max(own, started + (ts_ms - first_ts_ms) / 1000 / speed)


def _bounded(events: Iterator[SimEvent], plan: EmitPlan) -> Iterator[SimEvent]:
    for n, ev in enumerate(events):
        if plan.count is not None and n >= plan.count:
            return
        if plan.stop_at_ms is not None and ev.ts_ms > plan.stop_at_ms:
            return
        yield ev


def write_jsonl(events: Iterator[SimEvent], plan: EmitPlan, path: Path) -> int:
    written = 0
    with path.open("wb") as out:
        for ev in _bounded(events, plan):
            out.write(orjson.dumps(ev.event))
            out.write(b"\n")
            written += 1
    return written


async def publish(
    events: Iterator[SimEvent],
    plan: EmitPlan,
    publisher: BatchPublisher,
    topics: dict[Family, str],
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    sent = 0
    started = clock()
    first_ts_ms: int | None = None
    for ev in _bounded(events, plan):
        if plan.live:
            if first_ts_ms is None:
                first_ts_ms = ev.ts_ms
            wait = release_time(ev.ts_ms, first_ts_ms, started, plan.catch_up_speed) - clock()
            if wait > 0.02:
                await publisher.flush()
                await asyncio.sleep(wait)
        elif plan.rate and sent % 1000 == 0:
            ahead = sent / plan.rate - (clock() - started)
            if ahead > 0:
                await publisher.flush()
                await asyncio.sleep(ahead)
        await publisher.send(
            topics[ev.family], ev.event["user_id"].encode(), orjson.dumps(ev.event)
        )
        sent += 1
        if on_progress is not None and sent % 5000 == 0:
            on_progress(sent)
    await publisher.flush()
    if on_progress is not None:
        on_progress(sent)
    return sent
