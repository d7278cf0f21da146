"""Drive a metric family's real handlers and keyed state batch by batch, without Kafka or Redis.

Does what the engine does per partition and batch — decode, drop late events, run the handlers,
settle the keyed state with the entities touched or due, keep the new state — and sums every
delta the batches produce, so a property test can compare the outcome with a batch reference
under arbitrary arrival orders and batch cuts.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.contract.decode import Decoder, Event
from stream.engine.deltas import Deltas
from stream.engine.keyed import KeyedState, fields_by_key, updates_by_field
from tests.support.reference import partition_of

Handler = Callable[[Event, int, Deltas], None]
_decoder = Decoder(max_message_bytes=65536, max_future_skew_ms=10**15, segment_event_map={})


@dataclass
class Outcome:
    counters: Counter[tuple[int, str]] = field(default_factory=Counter)
    hashes: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    totals: Counter[tuple[str, str]] = field(default_factory=Counter)
    on_time: list[dict[str, Any]] = field(default_factory=list)
    stored: list[dict[str, str]] = field(default_factory=list)
    users: set[tuple[int, str, str]] = field(default_factory=set)

    def add(self, deltas: Deltas) -> None:
        for (minute, name), members in deltas.users.items():
            self.users |= {(minute, name, m) for m in members}
        for minute, fields in deltas.counters.items():
            for k, v in fields.items():
                self.counters[(minute, k)] += v
        for (minute, name), fields in deltas.hashes.items():
            for k, v in fields.items():
                self.hashes[(minute, name, k)] += v
        for name, fields in deltas.totals.items():
            for k, v in fields.items():
                self.totals[(name, k)] += v


def run_keyed(
    state: KeyedState,
    handlers: Mapping[str, Handler],
    events: list[dict[str, Any]],
    cuts: list[int],
    *,
    partitions: int,
    lateness_ms: int,
) -> Outcome:
    out = Outcome(stored=[{} for _ in range(partitions)])
    due: list[dict[str, int]] = [{} for _ in range(partitions)]
    max_ts = [-1] * partitions
    bounds = [0, *sorted(set(cuts)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        per_part = [Deltas() for _ in range(partitions)]
        touched: set[int] = set()
        for e in events[lo:hi]:
            p = partition_of(e["user_id"], partitions)
            touched.add(p)  # the engine settles a partition when its batch has records
            if e["ts"] < max_ts[p] - lateness_ms:
                continue  # the fold sends it to the DLQ as late
            max_ts[p] = max(max_ts[p], e["ts"])
            out.on_time.append(e)
            decoded = _decoder.decode(orjson.dumps(e), 10**15)
            assert isinstance(decoded, Event), decoded
            handlers[decoded.type](decoded, decoded.ts_ms // 60_000 * 60, per_part[p])
        for p, deltas in enumerate(per_part):
            if p not in touched or max_ts[p] < 0:
                continue
            watermark = max_ts[p] - lateness_ms
            items = fields_by_key(state, deltas)
            wanted = set(items) | {f for f, at in due[p].items() if at <= watermark}
            stored = out.stored[p]
            before = {f: stored[f].encode() if f in stored else None for f in wanted}
            updates = state.settle(before, items, watermark, deltas)
            for f, (value, at) in updates_by_field(updates).items():
                if value is None:
                    stored.pop(f, None)
                    due[p].pop(f, None)
                else:
                    assert at is not None and at >= 0
                    stored[f], due[p][f] = value, at
            out.add(deltas)
    return out
