"""In-memory pre-aggregation of one partition's batch, and its encoding as Redis operations.

Metric folds record everything at minute resolution (one dict update per fact); the roll-up to
hours and days happens once per batch in :meth:`Deltas.to_call`, because minutes nest in local
hours and local hours in local days. That keeps per-event work small, which is the whole budget
of the hot path. Plain data in, plain lists out: no I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from stream.engine.keys import Keys
from stream.engine.windows import GRANULARITY_CODE, Windows

__all__ = [
    "ADPAIR_HASHES",
    "LEGACY_ADPAIRS",
    "ApplyOps",
    "Deltas",
    "Layout",
    "RetentionPolicy",
    "adpairs_key_name",
    "build_call",
    "build_ops",
    "op_spans",
    "pair_digest",
    "pair_digest_bytes",
]


def pair_digest_bytes(*parts: str) -> bytes:
    """Stable 64-bit digest of a tuple of ids (Python's hash() differs per process), 8 bytes.

    Ids are user-controlled and may contain the NUL separator, which would make ("a\0b", "c")
    and ("a", "b\0c") the same pair. Such tuples are length-prefixed in a separate BLAKE2b domain
    instead; every other tuple keeps the digest it always had (open sessions stay addressable).
    """
    joined = "\x00".join(parts)
    if joined.count("\x00") == len(parts) - 1:
        return hashlib.blake2b(joined.encode(), digest_size=8).digest()
    framed = b"".join(len(b).to_bytes(4, "big") + b for b in (p.encode() for p in parts))
    return hashlib.blake2b(framed, digest_size=8, person=b"es-framed").digest()


def pair_digest(*parts: str) -> str:
    """:func:`pair_digest_bytes` as 16 hex characters (hash fields of keyed state)."""
    return pair_digest_bytes(*parts).hex()


#: Orphan-click pair state of one shard and day lives in ``ADPAIR_HASHES`` hashes
#: ``adpairs:<b>``: the first byte ``b`` of the pair's digest picks the hash, the other 7 bytes
#: (binary) name the field. Small hashes stay listpack-encoded (Redis's default limit is 512
#: entries a hash; the bench's busiest shard-day, ~19k pairs, puts ~75 in each): ~14 B a pair
#: instead of ~80 in one big hashtable with hex fields. The count is fixed (one hash per value
#: of a byte), so a pair finds its state in the same hash all day whatever came before; changing
#: it (or the digest) is a change of the stored format, like the one from ``LEGACY_ADPAIRS``.
ADPAIR_HASHES = 256
#: The day's single hash of the layout before (16-hex-char fields, -1 = impression seen): read,
#: never written, for pairs whose sub-hash holds nothing yet (apply.lua op Q).
LEGACY_ADPAIRS = "adpairs"


class Deltas:
    """Everything one partition's batch changes, before it is turned into Redis operations."""

    __slots__ = (
        "counters",
        "day_counters",
        "hashes",
        "keyed",
        "keyed_updates",
        "orphan_pairs",
        "outbox",
        "pending",
        "totals",
        "users",
        "zsets",
    )

    def __init__(self) -> None:
        # minute start -> hash field -> increment (rolled up to every granularity)
        self.counters: dict[int, dict[str, int]] = {}
        # day start -> field -> increment, for facts that exist only per day
        self.day_counters: dict[int, dict[str, int]] = {}
        # (minute start, set name) -> members of a distinct-count (HyperLogLog) set
        self.users: dict[tuple[int, str], set[str]] = {}
        # (day start, user, escaped campaign, escaped placement) -> [impressions, clicks,
        # orphan-counter field] (filled by stream.metrics.clickstream)
        self.orphan_pairs: dict[tuple[int, str, str, str], list[int | str]] = {}
        # (minute start, hash name) -> field -> increment, in a window hash of its own (rolled up)
        self.hashes: dict[tuple[int, str], dict[str, int]] = {}
        # keyed state name -> entity key -> items the batch brings (see stream.engine.keyed)
        self.keyed: dict[str, dict[Any, list[Any]]] = {}
        # keyed state name -> its settled fields as apply op K's tail: field, new value ("":
        # delete), due time (-1: none), ... (see stream.engine.keyed.KeyedState.settle)
        self.keyed_updates: dict[str, list[str | int]] = {}
        # keyed state name -> [entries, flat op-A entries]: activity merged into a pending record
        # without reading the entity (apply.lua op A; customer scores)
        self.pending: dict[str, list[Any]] = {}
        # running-total hash name -> field -> increment (not windowed, never expires): levels
        # such as followers, customers or customers per band, and per-customer lifetime values
        self.totals: dict[str, dict[str, int]] = {}
        # sorted-set name -> member -> score, or None to remove it
        self.zsets: dict[str, dict[str, int | None]] = {}
        # outbox name -> messages, sequenced by the apply (see stream.engine.outbox)
        self.outbox: dict[str, list[str]] = {}

    def count(self, minute: int, name: str, n: int = 1) -> None:
        bucket = self.counters.get(minute)
        if bucket is None:
            bucket = self.counters[minute] = {}
        bucket[name] = bucket.get(name, 0) + n

    def total(self, name: str, field_: str, n: int) -> None:
        fields = self.totals.get(name)
        if fields is None:
            fields = self.totals[name] = {}
        fields[field_] = fields.get(field_, 0) + n

    def keyed_item(self, state: str, key: Any, item: Any) -> None:
        """Collect one item of an entity of a keyed state (see stream.engine.keyed). The
        clickstream states (sessions, customer scores) inline this: it runs per event there."""
        per_key = self.keyed.get(state)
        if per_key is None:
            per_key = self.keyed[state] = {}
        items = per_key.get(key)
        if items is None:
            per_key[key] = [item]
        else:
            items.append(item)

    def add_user(self, minute: int, set_name: str, member: str) -> None:
        members = self.users.get((minute, set_name))
        if members is None:
            members = self.users[(minute, set_name)] = set()
        members.add(member)

    def hash_count(self, minute: int, hash_name: str, name: str, n: int = 1) -> None:
        bucket = self.hashes.get((minute, hash_name))
        if bucket is None:
            bucket = self.hashes[(minute, hash_name)] = {}
        bucket[name] = bucket.get(name, 0) + n

    def is_empty(self) -> bool:
        return not (
            self.counters
            or self.users
            or self.orphan_pairs
            or self.day_counters
            or self.hashes
            or self.keyed_updates
            or self.pending
            or self.totals
            or self.zsets
            or self.outbox
        )


#: Granularities whose windows expire at window end + retention even when written later.
REAL_TIME_GRANULARITIES = frozenset({"minute"})


class RetentionPolicy(Protocol):
    """How long a window's keys live after the window ends (``Settings.retention`` is one)."""

    def for_granularity(self, granularity: str) -> int: ...


@dataclass(frozen=True)
class Layout:
    """What the roll-up needs to know about the deployment."""

    keys: Keys
    windows: Windows
    granularities: tuple[str, ...]
    retention: RetentionPolicy
    #: allowed lateness: per-day bookkeeping (orphan-click pairs) must outlive it
    lateness_s: int = 0

    def window_of(self, granularity: str, minute: int) -> int:
        if granularity == "minute":
            return minute
        if granularity == "hour":
            return self.windows.hour_of_minute(minute)
        return self.windows.day_of_minute(minute)

    def expire_at(self, granularity: str, start: int, now: int) -> int:
        """Retention counts from the window's end; for hours and days written after their end
        (a replay of older data), from the write instead.

        Minute windows are the real-time view and keep no replay exception: replaying 64 h of
        history would otherwise hold all 64 h of minute windows for a full retention period
        (most of a replay's memory), where a live run holds only the last ``retention.minute``.
        A replayed minute window already past retention gets an ``EXPIREAT`` in the past, so
        Redis drops it at once — after the write a live run paid too, which keeps the bench's
        CPU per event what live traffic costs.
        """
        end = self.windows.end_of(granularity, start)
        if granularity in REAL_TIME_GRANULARITIES:
            return end + self.retention.for_granularity(granularity)
        return max(end, now) + self.retention.for_granularity(granularity)


class ApplyOps:
    """An apply's KEYS (the partition state first) and its operations, flat, as apply.lua
    reads them."""

    def __init__(self, state_key: str) -> None:
        self.keys: list[str] = [state_key]
        self.index: dict[str, int] = {}
        self.ops: list[str | int | msgspec.Raw] = []
        self.n_ops = 0

    def key_index(self, key: str) -> int:
        idx = self.index.get(key)
        if idx is None:
            self.keys.append(key)
            idx = self.index[key] = len(self.keys)
        return idx

    def hincr(self, key: str, expire_at: int, fields: dict[str, int]) -> None:
        flat = [x for item in fields.items() if item[1] for x in item]  # field, delta, ...
        if not flat:
            return
        self.ops += ["H", self.key_index(key), expire_at, len(flat) // 2]
        self.ops += flat
        self.n_ops += 1

    def pfadd(self, key: str, expire_at: int, members: Iterable[str]) -> None:
        listed = list(members)
        self.ops += ["P", self.key_index(key), expire_at, len(listed), *listed]
        self.n_ops += 1


def adpairs_key_name(bucket: int) -> str:
    """Name (under ``Keys.extra(shard, "d", day, …)``) of a day's pair-state hash ``bucket``."""
    return f"{LEGACY_ADPAIRS}:{bucket}"


def _orphan_pairs(
    call: ApplyOps,
    pairs: dict[tuple[int, str, str, str], list[int | str]],
    layout: Layout,
    shard: str,
    now: int,
) -> None:
    """Op Q per touched pair-state hash of each day (apply.lua)."""
    keys = layout.keys
    # day -> first digest byte -> flat (other 7 digest bytes as a str, orphan field, impressions,
    # clicks) ... : the op's tail, built once per pair (this runs for every ad pair of a batch)
    by_day: dict[int, dict[int, list[str | int | msgspec.Raw]]] = {}
    raw = msgspec.Raw
    for (day, user, campaign, placement), (di, dc, cfield) in pairs.items():
        # User ids never reach Redis in clear here: a 64-bit digest names the pair.
        digest = pair_digest_bytes(user, campaign, placement)
        buckets = by_day.get(day)
        if buckets is None:
            buckets = by_day[day] = {}
        tail = buckets.get(digest[0])
        if tail is None:
            tail = buckets[digest[0]] = []
        tail += (raw(_FIXSTR7 + digest[1:]), cfield, di, dc)
    # Pair state only needs to outlive the day and its allowed lateness (+ a day).
    keep = max(3 * 86400, layout.lateness_s + 86400)
    for day, buckets in by_day.items():
        expire_at = max(layout.windows.end_of("day", day), now) + keep
        counters_idx = call.key_index(keys.counters(shard, "d", day))
        legacy_idx = call.key_index(keys.extra(shard, "d", day, LEGACY_ADPAIRS))
        for bucket, tail in buckets.items():
            call.ops += [
                "Q",
                call.key_index(keys.extra(shard, "d", day, adpairs_key_name(bucket))),
                expire_at,
                len(tail) // 4,
                counters_idx,
                legacy_idx,
                f"{bucket:02x}",
            ]
            call.ops += tail
            call.n_ops += 1


#: MessagePack header of a 7-byte str (fixstr): Redis's cmsgpack rejects the bin types, and
#: decodes a str to a Lua string whatever its bytes (msgspec would only write UTF-8 as str).
_FIXSTR7 = b"\xa7"


def _add_fields(rolled: dict[Any, dict[str, int]], window: Any, fields: dict[str, int]) -> None:
    """Sum one minute's (or day's) fields into its window's running totals."""
    target = rolled.get(window)
    if target is None:
        rolled[window] = dict(fields)
    else:
        for f, d in fields.items():
            target[f] = target.get(f, 0) + d


def build_call(
    deltas: Deltas,
    layout: Layout,
    shard: str,
    expected_offset: int,
    last_offset: int,
    max_ts: int,
    now: int,
    progress: Mapping[str, int] | None = None,
) -> tuple[list[str], list[str | int | bytes]]:
    """KEYS and ARGV for ``FCALL es_apply_v1`` (see apply.lua for the protocol).

    ``progress``: more partition-state fields stored with the offset (relay high-water marks).
    """
    call = build_ops(deltas, layout, shard, now)
    argv: list[str | int | bytes] = [
        expected_offset,
        last_offset,
        max_ts,
        call.n_ops,
        msgspec.msgpack.encode(call.ops),
    ]
    for f, v in (progress or {}).items():
        argv += [f, v]
    return call.keys, argv


def build_ops(deltas: Deltas, layout: Layout, shard: str, now: int) -> ApplyOps:
    """A batch's KEYS and operations (flat, not yet encoded): :func:`build_call`'s content."""
    keys = layout.keys
    call = ApplyOps(keys.state(shard))
    for g in layout.granularities:
        code = GRANULARITY_CODE[g]
        rolled: dict[int, dict[str, int]] = {}
        if g == "minute":
            rolled = deltas.counters  # minutes are their own windows: nothing to roll up
        else:
            for minute, fields in deltas.counters.items():
                _add_fields(rolled, layout.window_of(g, minute), fields)
        if g == "day":
            for day, fields in deltas.day_counters.items():
                _add_fields(rolled, day, fields)
        for start, fields in rolled.items():
            call.hincr(keys.counters(shard, code, start), layout.expire_at(g, start, now), fields)

        sets: dict[tuple[int, str], set[str]] = {}
        if g == "minute":
            sets = deltas.users
        else:
            for (minute, name), members in deltas.users.items():
                skey = (layout.window_of(g, minute), name)
                existing = sets.get(skey)
                if existing is None:
                    sets[skey] = set(members)
                else:
                    existing |= members
        for (start, name), members in sets.items():
            call.pfadd(
                keys.users(shard, code, start, name), layout.expire_at(g, start, now), members
            )

        hashes: dict[tuple[int, str], dict[str, int]] = {}
        if g == "minute":
            hashes = deltas.hashes
        else:
            for (minute, name), fields in deltas.hashes.items():
                _add_fields(hashes, (layout.window_of(g, minute), name), fields)
        for (start, name), fields in hashes.items():
            call.hincr(
                keys.extra(shard, code, start, name), layout.expire_at(g, start, now), fields
            )

    if deltas.orphan_pairs:
        _orphan_pairs(call, deltas.orphan_pairs, layout, shard, now)

    for name, fields in deltas.totals.items():
        # expire_at 0: a running total outlives every window (levels are read as total − the
        # windows since), so it must never expire.
        call.hincr(keys.totals(shard, name), 0, fields)

    for state_name, updates in deltas.keyed_updates.items():
        if not updates:
            continue
        call.ops += [
            "K",
            call.key_index(keys.keyed(shard, state_name)),
            0,  # open state never expires: it closes by event time, however long that takes
            len(updates) // 3,
            call.key_index(keys.keyed_due(shard, state_name)),
        ]
        call.ops += updates  # already the op's tail (settled that way: no loop per field here)
        call.n_ops += 1

    for state_name, (count, entries) in deltas.pending.items():
        if count:
            call.ops += [
                "A",
                call.key_index(keys.keyed(shard, state_name)),
                0,
                count,
                call.key_index(keys.keyed_due(shard, state_name)),
            ]
            call.ops += entries
            call.n_ops += 1

    for name, ranked in deltas.zsets.items():
        if ranked:
            call.ops += ["Z", call.key_index(keys.zset(shard, name)), 0, len(ranked)]
            for member, score in ranked.items():
                call.ops += [member, "" if score is None else score]
            call.n_ops += 1
    for name, messages in deltas.outbox.items():
        if messages:
            call.ops += ["X", call.key_index(keys.outbox(shard, name)), 0, len(messages), name]
            call.ops += messages
            call.n_ops += 1
    return call


def op_spans(ops: Sequence[object], n_ops: int) -> list[tuple[str, int, int]]:
    """(op letter, start, end) of each operation in a flat op list (apply.lua's header)."""
    spans: list[tuple[str, int, int]] = []
    i = 0
    for _ in range(n_ops):
        op, n = ops[i], ops[i + 3]
        assert isinstance(op, str) and isinstance(n, int)
        if op == "A":  # entries of 7 + 3 x (their own count) items
            end = i + 5
            for _ in range(n):
                m = ops[end + 6]
                assert isinstance(m, int)
                end += 7 + 3 * m
        else:
            end = i + _OP_HEAD[op] + _OP_ITEM[op] * n
        spans.append((op, i, end))
        i = end
    return spans


#: Items of an operation's head (op, key, expire_at, n and its own arguments) and of each of
#: its n entries, as apply.lua reads them (op A's entries have their own lengths).
_OP_HEAD = {"H": 4, "P": 4, "Q": 7, "O": 5, "K": 5, "Z": 4, "X": 5, "A": 5}
_OP_ITEM = {"H": 2, "P": 1, "Q": 4, "O": 4, "K": 3, "Z": 2, "X": 1, "A": 0}
