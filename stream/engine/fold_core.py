"""The fold's loop: decode, validate, watermark, dispatch, one record at a time. Pure.

The only source of this code: ``setup.py`` compiles it with Cython (typed by the ``.pxd`` beside
it) into ``fold_core_compiled``, which :func:`stream.engine.fold.fold_records` runs when built
(:mod:`stream.engine.compiled`). The types it works with live in
:mod:`stream.engine.fold_types`; what a fold decides is explained in :mod:`stream.engine.fold`.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream.contract.decode import Event, Rejection
from stream.contract.types import Reason
from stream.engine.dedupe import PartitionWindow
from stream.engine.deltas import Deltas
from stream.engine.fold_types import (
    ACTIVE,
    ACTIVE_SET,
    AUTHORED,
    FoldContext,
    FoldResult,
    Record,
    Rejected,
)
from stream.engine.relay import APPLIED, BadHeader, admit, parse_header

__all__ = ["fold_records"]


def _reject(record: Record, value: bytes, reason: Reason, detail: str) -> Rejected:
    return Rejected(record.offset, record.key, value, record.timestamp, reason, detail)


def fold_records(
    records: Sequence[Record],
    ctx: FoldContext,
    max_ts: int,
    now_ms: int,
    into: FoldResult | None = None,
    window: PartitionWindow | None = None,
    warm_until: int = -1,
    relay_hw: dict[str, int] | None = None,
) -> FoldResult | None:
    """Fold records (one partition, offset order) given the partition's stored max event time.

    ``into`` continues an earlier result of the same partition with the records that follow
    it, so a large batch can be folded in slices (the engine yields to the event loop between
    them); the outcome is the same as one call over all records. ``window`` detects producer
    duplicates by event id; records at or before ``warm_until`` (already applied by an earlier
    owner) only rebuild it. None when every record was such a warm-up record and nothing
    was folded before. ``relay_hw`` (the partition's stored relay high-water marks; None: the
    partition does not accept relayed records) is copied into the result, which carries it on.
    """
    if window is not None and records[0].offset <= warm_until:
        records = _warm(records, ctx, window, warm_until, now_ms, relay_hw is not None)
        if not records:
            return into
    if into is None:
        result = FoldResult(Deltas(), records[0].offset, records[-1].offset, max_ts)
        if relay_hw is not None:
            result.relay_hw = dict(relay_hw)
    else:
        result = into
        result.last_offset = records[-1].offset
        max_ts = result.max_ts
    deltas = result.deltas
    admit = window.admit if window is not None else _admit_all
    decode = ctx.decoder.decode
    dispatch = ctx.dispatch
    passive_authors = ctx.passive_authors
    lateness = ctx.lateness_ms
    sample_every = ctx.lag_sample_every
    rejected = result.rejected
    counters = deltas.counters
    users = deltas.users
    accepted = result.accepted
    relays = result.relay_hw is not None
    # The previous event's minute (its start in ms: lo), its counters and its active users:
    # consecutive events of a partition mostly share a minute, so most events skip the lookups.
    lo = hi = minute = 0
    bucket: dict[str, int] = {}
    members: set[str] | None = None
    for record in records:
        if relays and record.headers and _fold_relayed(record, result, ctx, max_ts, now_ms):
            continue
        value = record.value
        if value is None:
            rejected.append(_reject(record, b"", Reason.NOT_JSON, "empty (tombstone) message"))
            continue
        outcome = decode(value, now_ms)
        if type(outcome) is Rejection:
            rejected.append(_reject(record, value, outcome.reason, outcome.detail))
            continue
        event: Event = outcome  # type: ignore[assignment]
        if not admit(record.offset, event.event_id):
            rejected.append(_reject(record, value, Reason.DUPLICATE, "event_id seen recently"))
            continue
        ts = event.ts_ms
        if ts > max_ts:
            max_ts = ts
        elif ts < max_ts - lateness:
            detail = f"ts {ts} behind watermark {max_ts - lateness}"
            rejected.append(_reject(record, value, Reason.LATE, detail))
            continue
        if not lo <= ts < hi:
            lo = ts // 60_000 * 60_000
            hi = lo + 60_000
            minute = lo // 1000
            found = counters.get(minute)
            if found is None:
                found = counters[minute] = {}
            bucket = found
            members = users.get((minute, ACTIVE_SET))
        kind = event.type
        entry = dispatch.get(kind)
        if entry is None:
            entry = ctx.dispatch_entry(kind)
        name, activity, handlers = entry
        # Inlined Deltas.count / add_user: this loop is the hot path.
        bucket[name] = bucket.get(name, 0) + 1
        if activity is ACTIVE or (
            activity is AUTHORED and event.props.author not in passive_authors
        ):
            if members is None:
                members = users.setdefault((minute, ACTIVE_SET), set())
            members.add(event.user_id)
        for handler in handlers:
            handler(event, minute, deltas)
        accepted += 1
        if accepted % sample_every == 1:
            result.lag_sample_ts.append(ts)
    result.accepted = accepted
    result.max_ts = max_ts
    return result


def _admit_all(offset: int, event_id: str) -> bool:
    return True


def _fold_relayed(
    record: Record, result: FoldResult, ctx: FoldContext, max_ts: int, now_ms: int
) -> bool:
    """Fold a record that carries a relay header; False when it carries none (an app's own
    headers): the caller folds it as an ordinary record then.

    The lane's sequence number decides first (so that a re-send never reaches the dead-letter
    topic); an applied seq whose event is bad or late is dead-lettered like any event.
    """
    value = record.value or b""
    try:
        lane = parse_header(record.headers)
    except BadHeader as exc:
        result.rejected.append(_reject(record, value, Reason.SCHEMA, str(exc)))
        return True
    if lane is None:
        return False
    assert result.relay_hw is not None
    shard, seq = lane
    outcome = admit(result.relay_hw, shard, seq)
    if outcome == APPLIED:
        decoded = ctx.decoder.decode(value, now_ms)
        origin = f"relayed from {shard} (#{seq}, score only): "
        watermark = max_ts - ctx.lateness_ms
        if isinstance(decoded, Rejection):
            outcome = "rejected"
            result.rejected.append(_reject(record, value, decoded.reason, origin + decoded.detail))
        elif decoded.ts_ms < watermark:
            outcome = "rejected"
            detail = f"{origin}ts {decoded.ts_ms} behind watermark {watermark}"
            result.rejected.append(_reject(record, value, Reason.LATE, detail))
        else:
            minute = decoded.ts_ms // 60_000 * 60
            for handler in ctx.relay_handlers.get(decoded.type, ()):
                handler(decoded, minute, result.deltas)
    result.relayed[outcome] = result.relayed.get(outcome, 0) + 1
    return True


def _warm(
    records: Sequence[Record],
    ctx: FoldContext,
    window: PartitionWindow,
    warm_until: int,
    now_ms: int,
    relays: bool,
) -> Sequence[Record]:
    """Feed already-applied records into the duplicate window; return the records after them.

    Relayed records stay out of it, as in the fold.

    They are decoded exactly as when they were first folded, except that "now" (for the
    future-timestamp check) is the record's own Kafka timestamp, the closest known stand-in for
    the moment it was first processed (now, for a record without one).
    """
    decode = ctx.decoder.decode
    for i, record in enumerate(records):
        if record.offset > warm_until:
            return records[i:]
        value = record.value
        if value is None:
            continue
        if relays and record.headers and _is_relayed(record):
            continue
        outcome = decode(value, record.timestamp if record.timestamp > 0 else now_ms)
        if type(outcome) is not Rejection:
            window.admit(record.offset, outcome.event_id)  # type: ignore[union-attr]
    return ()


def _is_relayed(record: Record) -> bool:
    try:
        return parse_header(record.headers) is not None
    except BadHeader:
        return True  # the fold dead-letters it without the window too
