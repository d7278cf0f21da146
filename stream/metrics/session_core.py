"""The per-key core of sessionizing: open sessions, adding events, closing on the watermark and
the stored form of open sessions. Pure; the definitions: :mod:`stream.metrics.sessions`.

This module is the one source of the sessionizer and runs as it is. ``setup.py`` also compiles
it with Cython into ``session_core_compiled``: ``session_core_compiled.pxd`` beside it declares C
types for the same code (``Session`` becomes an extension type with C integer fields, the loops
get typed locals), so the compiled module and this file cannot disagree. Which one a process runs
is :data:`stream.metrics.sessions.CORE` (exported as ``stream_compiled_core{module}``, see
:mod:`stream.engine.compiled`); the tests compare the two and, in CI, require the compiled one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from urllib.parse import unquote

from stream.engine.keys import escape, field
from stream.metrics.buckets import bucket_field

__all__ = [
    "DURATION_HASH",
    "MEASURES",
    "STEM",
    "Session",
    "SessionHit",
    "add_hit",
    "pack",
    "record_closed",
    "settle",
    "settle_field",
    "settle_fields",
    "unpack",
]

#: Counter-field stem of session measures (``ses.<measure>`` and ``ses.<measure>|<dim>|<v>``).
STEM = "ses."
MEASURES = ("n", "ms", "eng", "conv", "pv", "1p")
#: Hash (one per window) of duration counts per bucket (:mod:`stream.metrics.buckets`):
#: ``all|b<i>`` / ``<dim>|<v>|b<i>`` (before the buckets: ``all|<s>``, read into their bucket).
DURATION_HASH = "sesdur"


#: One clickstream event as the sessionizer needs it: (event time in ms, page or screen view,
#: conversion, platform, channel), labels already bounded. A plain tuple, built once per event
#: (the compiled core reads its items without a type check).
SessionHit = tuple[int, bool, bool, str, str]

_by_ts = itemgetter(0)


class Session:
    """A run of one key's events; mergeable (see :meth:`absorb`)."""

    # With Cython these are C fields (session_core.pxd); as plain Python, slots.
    __slots__ = ("channel", "conversions", "first", "last", "page_views", "platform")

    def __init__(
        self, first: int, last: int, page_views: int, conversions: int, platform: str, channel: str
    ) -> None:
        self.first = first  # ms
        self.last = last  # ms
        self.page_views = page_views
        self.conversions = conversions
        self.platform = platform  # of the first event (ties: the smaller label, deterministic)
        self.channel = channel

    def _fields(self) -> tuple[int, int, int, int, str, str]:
        return (
            self.first, self.last, self.page_views, self.conversions, self.platform, self.channel
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Session) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "Session(first={}, last={}, page_views={}, conversions={}, platform={!r}, " \
            "channel={!r})".format(*self._fields())  # fmt: skip

    def absorb(self, other: Session) -> None:
        if (other.first, other.platform, other.channel) < (self.first, self.platform, self.channel):
            self.first, self.platform, self.channel = other.first, other.platform, other.channel
        self.last = max(self.last, other.last)
        self.page_views += other.page_views
        self.conversions += other.conversions

    def closes_at(self, timeout_ms: int, cap_ms: int) -> int:
        """Once the watermark reaches this, no event can join the session any more."""
        return min(self.last + timeout_ms, self.first + cap_ms)

    @property
    def duration_ms(self) -> int:
        return self.last - self.first

    def engaged(self, engaged_after_ms: int) -> bool:
        """GA4: lasts more than ``engaged_after_ms``, or converted, or ≥ 2 page views."""
        return (
            self.last - self.first > engaged_after_ms
            or self.conversions > 0
            or self.page_views >= 2
        )


def _session_of(hit: SessionHit) -> Session:
    """A new session of one event (fields set directly: no argument parsing when compiled)."""
    s = Session.__new__(Session)
    s.first = s.last = hit[0]
    s.page_views = 1 if hit[1] else 0
    s.conversions = 1 if hit[2] else 0
    s.platform = hit[3]
    s.channel = hit[4]
    return s


def _first_of(s: Session) -> int:
    return s.first


def add_hit(sessions: list[Session], hit: SessionHit, timeout: int, cap: int) -> None:
    """Put one event into a key's open sessions (kept sorted by first event)."""
    ts: int = hit[0]
    if not sessions:  # the key's first session: nothing to search or sort
        sessions.append(_session_of(hit))
        return
    latest: Session = sessions[-1]
    # Fast path, the common case: in order, continuing the latest session.
    if latest.first < ts and 0 <= ts - latest.last < timeout and ts - latest.first < cap:
        latest.last = ts
        latest.page_views += hit[1]
        latest.conversions += hit[2]
        return
    # (Loops, not comprehensions: Cython compiles no closures into cpdef functions.)
    near: list[Session] = []
    lo = hi = ts
    for s in sessions:
        if ts - s.last < timeout and s.first - ts < timeout:
            near.append(s)
            lo = min(lo, s.first)
            hi = max(hi, s.last)
    new = _session_of(hit)
    if not near:
        sessions.append(new)
        sessions.sort(key=_first_of)
        return
    if hi - lo < cap:  # join, bridging (merging) every session the event touches
        target: Session = near[0]
        target.absorb(new)
        for s in near[1:]:
            target.absorb(s)
            sessions.remove(s)
        sessions.sort(key=_first_of)
        return
    # Over the cap: the latest session it still fits in, else a new one (the greedy cut in order).
    for s in reversed(near):
        if max(s.last, ts) - min(s.first, ts) < cap:
            s.absorb(new)
            sessions.sort(key=_first_of)
            return
    sessions.append(new)
    sessions.sort(key=_first_of)


def settle(
    sessions: list[Session], hits: Sequence[SessionHit], watermark: int, timeout: int, cap: int
) -> tuple[list[Session], list[Session]]:
    """Add a batch's hits (any order), then split into (still open, closed by the watermark)."""
    if len(hits) > 1:
        hits = sorted(hits, key=_by_ts)
    for hit in hits:
        add_hit(sessions, hit, timeout, cap)
    open_: list[Session] = []
    closed: list[Session] = []
    for s in sessions:
        if s.closes_at(timeout, cap) <= watermark:
            closed.append(s)
        else:
            open_.append(s)
    return open_, closed


def settle_field(
    before: bytes | str | None,
    hits: Sequence[SessionHit],
    watermark: int,
    timeout: int,
    cap: int,
) -> tuple[str | None, int, list[Session]]:
    """One stored field's whole settle: its open sessions, the batch's hits, the watermark ->
    (new stored value or None when nothing stays open, due time of the earliest close (0 when
    none), closed sessions)."""
    open_, closed = settle(unpack(before), hits, watermark, timeout, cap)
    if not open_:
        return None, 0, closed
    due: int = open_[0].closes_at(timeout, cap)
    for s in open_:
        at = s.closes_at(timeout, cap)
        if at < due:
            due = at
    return pack(open_), due, closed


# ---- storage format of a key's open sessions ----------------------------------------------
# "first,duration,page_views,conversions,platform,channel" per session, ";"-separated. Labels are
# escaped (no "," or ";"). About 35 bytes per session.


# Labels come from bounded sets, so their escaped and unescaped forms are cached.
_escaped = lru_cache(maxsize=4096)(escape)
_unescaped = lru_cache(maxsize=4096)(unquote)


def pack(sessions: Sequence[Session]) -> str:
    parts: list[str] = []
    for s in sessions:
        parts.append(
            f"{s.first},{s.last - s.first},{s.page_views},{s.conversions},"
            f"{_escaped(s.platform)},{_escaped(s.channel)}"
        )
    return ";".join(parts)


def unpack(value: bytes | str | None) -> list[Session]:
    if not value:
        return []
    text = value.decode() if isinstance(value, bytes) else value
    # One split for all sessions (six fields each), not one per session.
    parts = text.replace(";", ",").split(",")
    out: list[Session] = []
    for i in range(0, len(parts), 6):
        s = Session.__new__(Session)
        s.first = int(parts[i])
        s.last = s.first + int(parts[i + 1])
        s.page_views = int(parts[i + 2])
        s.conversions = int(parts[i + 3])
        s.platform = _unescaped(parts[i + 4])
        s.channel = _unescaped(parts[i + 5])
        out.append(s)
    return out


# ---- one state's whole batch, and the metric facts of closed sessions -----------------------


def settle_fields(
    stored: Mapping[str, str | bytes | None],
    items: Mapping[str, list[SessionHit]],
    watermark: int,
    timeout: int,
    cap: int,
    engaged_after: int,
    counters: dict[int, dict[str, int]],
    hashes: dict[tuple[int, str], dict[str, int]],
) -> list[str | int]:
    """Settle every read or touched field (:meth:`stream.metrics.sessions.SessionState.settle`):
    new value and due time of each field that changed, flat as apply op K takes them
    (:data:`stream.engine.keyed.KeyedUpdates`: ``""``, -1 deletes), closed sessions counted
    into ``counters`` and ``hashes`` (those of :class:`stream.engine.deltas.Deltas`)."""
    updates: list[str | int] = []
    # The keyed read returns every touched field, so `stored` holds them all: iterating it
    # (then any touched field it lacks) avoids building the union of both per batch.
    for name, before in stored.items():
        _settle_into(
            updates,
            name,
            before,
            items.get(name, ()),
            watermark,
            timeout,
            cap,
            engaged_after,
            counters,
            hashes,
        )
    for name, hits in items.items():
        if name not in stored:
            _settle_into(
                updates, name, None, hits, watermark, timeout, cap, engaged_after, counters, hashes
            )
    return updates


def _settle_into(
    updates: list[str | int],
    name: str,
    before: bytes | str | None,
    hits: Sequence[SessionHit],
    watermark: int,
    timeout: int,
    cap: int,
    engaged_after: int,
    counters: dict[int, dict[str, int]],
    hashes: dict[tuple[int, str], dict[str, int]],
) -> None:
    """One field of :func:`settle_fields`: its closed sessions counted, its update appended."""
    value, due, closed = settle_field(before, hits, watermark, timeout, cap)
    for session in closed:
        record_closed(session, engaged_after, counters, hashes)
    if value is not None:
        updates.append(name)
        updates.append(value)
        updates.append(due)
    elif before is not None:
        updates.append(name)
        updates.append("")
        updates.append(-1)


@lru_cache(maxsize=4096)
def _closed_fields(platform: str, channel: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Counter fields per measure (all, by platform, by channel) and duration-hash prefixes.

    Platform and channel come from bounded sets, so these strings are built once, not per
    closed session (which, once the watermark starts closing sessions, is per few events).
    """
    suffixes = ("", field("", "platform", escape(platform)), field("", "channel", escape(channel)))
    counters = tuple(STEM + measure + suffix for measure in MEASURES for suffix in suffixes)
    durations = (
        field("all", ""),
        field("platform", escape(platform), ""),
        field("channel", escape(channel), ""),
    )
    return counters, durations


def _add(bucket: dict[str, int], names: tuple[str, ...], measure: int, n: int) -> None:
    """Add ``n`` to one measure's three fields (all, platform, channel)."""
    if n:
        for i in range(3 * measure, 3 * measure + 3):
            name = names[i]
            bucket[name] = bucket.get(name, 0) + n


def record_closed(
    session: Session,
    engaged_after: int,
    counters: dict[int, dict[str, int]],
    hashes: dict[tuple[int, str], dict[str, int]],
) -> None:
    """Count a closed session into the window (minute) of its first event."""
    minute = session.first // 60_000 * 60
    duration = session.last - session.first
    page_views = session.page_views
    names, prefixes = _closed_fields(session.platform, session.channel)
    bucket = counters.get(minute)
    if bucket is None:
        bucket = counters[minute] = {}
    # in MEASURES order: n, ms, eng, conv, pv, 1p
    _add(bucket, names, 0, 1)
    _add(bucket, names, 1, duration)
    _add(bucket, names, 2, 1 if session.engaged(engaged_after) else 0)
    _add(bucket, names, 3, 1 if session.conversions > 0 else 0)
    _add(bucket, names, 4, page_views)
    _add(bucket, names, 5, 1 if page_views <= 1 else 0)
    durations = hashes.get((minute, DURATION_HASH))
    if durations is None:
        durations = hashes[(minute, DURATION_HASH)] = {}
    suffix = bucket_field(duration // 1000)
    for prefix in prefixes:
        name = prefix + suffix
        durations[name] = durations.get(name, 0) + 1
