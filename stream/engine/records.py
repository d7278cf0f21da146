"""Lean record hand-out: give the hot path aiokafka's own C records, a record batch at a time.

Stock aiokafka hands a fetch's records out one at a time: ``getmany`` loops in Python over a
generator that wraps every record in a ``ConsumerRecord`` dataclass (eleven fields, a tuple of
headers, two ``len`` calls). Here that cost ~1.5 µs per event, a sixth of the whole per-event
budget at 100k events/s. The engine needs only ``offset``, ``key``, ``value``, ``timestamp`` and
``headers``, which the Cython ``DefaultRecord`` aiokafka decodes into already carries. And with
the wrapper gone, the per-record generator, ``__next__`` and append loop were still ~0.3 µs of
the ~0.75 µs a record costs from fetch response to list: so an opted-in consumer's records are
taken a whole record batch at a time (one ``list()`` of the batch in C, then slices).

A consumer opts in by passing :func:`lean_value` as its ``value_deserializer``; every other
consumer in the process (faust's own, the tools') keeps the stock behaviour. The hand-out keeps
aiokafka's semantics: CRC checks, read-committed filtering of aborted transactions, control
batches skipped, records before the fetch offset (compressed message sets) skipped, the position
after the last record handed out. If a future aiokafka moves the hooks, :func:`install` does
nothing and ``lean_value`` is an identity deserializer, so the engine still gets correct
(ordinary) records, only slower. aiokafka is pinned to 0.14.x.

Must never: change what any consumer that did not opt in receives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiokafka import errors
from aiokafka.consumer import fetcher

__all__ = ["LeanRecords", "install", "lean_value"]

log = logging.getLogger(__name__)

_installed = False


def lean_value(value: bytes | None) -> bytes | None:
    """Marker (and harmless fallback): the identity value deserializer."""
    return value


def _record_batches(owner: Any) -> Iterator[Any]:
    """The record batches of a ``PartitionRecords`` that carry records for the consumer.

    aiokafka's ``PartitionRecords._unpack_records`` at batch level, check for check.
    """
    records = owner._records
    while records.has_next():
        batch = records.next_batch()
        if owner._check_crcs and not batch.validate_crc():
            raise errors.CorruptRecordException(f"Invalid CRC - {owner._tp}")
        if owner._isolation_level == fetcher.READ_COMMITTED and batch.producer_id is not None:
            owner._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and owner._contains_abort_marker(batch):
                owner._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in owner._aborted_producers:
                owner.next_fetch_offset = batch.next_offset
                continue
        if batch.is_control_batch:
            owner.next_fetch_offset = batch.next_offset
            continue
        yield batch


class LeanRecords:
    """One fetched partition's records, handed out in runs (:meth:`take`) or one by one.

    Stands in for the record generator of an opted-in ``PartitionRecords`` (its ``owner``),
    whose ``next_fetch_offset`` it keeps as the stock generator does: past the last record
    handed out, and past a whole record batch once all of its records are.
    """

    __slots__ = ("_batches", "_end", "_owner", "_rest")

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self._batches = _record_batches(owner)
        #: the current record batch's records not yet handed out (only those: a record handed
        #: out must not be kept alive here until the next ``getmany``)
        self._rest: list[Any] = []
        self._end = -1  # the offset after the current record batch, until it is reached

    def __iter__(self) -> LeanRecords:
        return self

    def __next__(self) -> Any:
        taken = self.take(1)
        if not taken:
            raise StopIteration
        return taken[0]

    def take(self, limit: int | None) -> list[Any]:
        """The next ``limit`` records (all when None); fewer only when none are left."""
        owner = self._owner
        out: list[Any] = []
        while True:
            rest = self._rest
            if rest:
                room = len(rest) if limit is None else limit - len(out)
                if room >= len(rest):
                    chunk, self._rest = rest, []
                else:
                    chunk, self._rest = rest[:room], rest[room:]
                if out:
                    out += chunk
                else:
                    out = chunk
                owner.next_fetch_offset = chunk[-1].offset + 1
                if self._rest:
                    return out  # ``limit`` reached inside the record batch
            if self._end >= 0:
                owner.next_fetch_offset = self._end  # past records compaction removed
                self._end = -1
            if limit is not None and len(out) >= limit:
                return out
            source = next(self._batches, None)
            if source is None:
                # All handed out. As aiokafka does: drop the owner's link back to us, so that
                # the pair (and the fetch's buffer) goes with its last reference, not with the
                # next cycle collection, which the worker's tuned GC makes rare.
                owner._records_iterator = None
                return out
            records = list(source)
            start = owner.next_fetch_offset
            if records and records[0].offset < start:  # a compressed message set's head
                records = [record for record in records if record.offset >= start]
            self._rest, self._end = records, source.next_offset


def install() -> bool:
    """Patch aiokafka once so that opted-in consumers receive raw records. True when active."""
    global _installed
    if _installed:
        return True
    partition_records = getattr(fetcher, "PartitionRecords", None)
    fetch_result = getattr(fetcher, "FetchResult", None)
    unpack = getattr(partition_records, "_unpack_records", None)
    getall = getattr(fetch_result, "getall", None)
    needed = ("_tp", "_records", "_check_crcs", "_isolation_level", "_aborted_producers")
    helpers = ("_consume_aborted_up_to", "_contains_abort_marker")
    if (
        unpack is None
        or getall is None
        or not all(hasattr(partition_records, name) for name in helpers)
        or not hasattr(fetcher, "READ_COMMITTED")
    ):
        log.warning("aiokafka has no record hand-out hooks; the engine uses ordinary records")
        return False

    def unpack_records(self: Any) -> Any:
        if self._value_deserializer is lean_value and all(hasattr(self, n) for n in needed):
            return LeanRecords(self)
        return unpack(self)

    def lean_getall(self: Any, max_records: int | None = None) -> list[Any]:
        owner = self._partition_records
        lean = getattr(owner, "_records_iterator", None)
        if type(lean) is not LeanRecords:
            return getall(self, max_records)  # type: ignore[no-any-return]
        if not self.check_assignment(self._topic_partition):
            return []
        records = lean.take(max_records)
        self._update_position()
        if max_records is None or len(records) < max_records:
            self._partition_records = None  # all handed out: the fetcher asks for more
        return records

    partition_records._unpack_records = unpack_records  # type: ignore[union-attr]
    fetch_result.getall = lean_getall  # type: ignore[union-attr]
    _installed = True
    return True
