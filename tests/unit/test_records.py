"""The lean record hand-out (stream.engine.records) against aiokafka's own, on real record bytes.

Fetch data is built with aiokafka's record batch builder (plus control batches, whose marker bit
the builder does not set), and both hand-outs run through aiokafka's real ``FetchResult`` and
subscription ``Assignment``: same records, same positions, same errors, for any cut of the fetch
into ``getmany`` calls.
"""

from __future__ import annotations

import gc
import struct
import weakref
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.records import LeanRecords, install, lean_value

TP = TopicPartition("clickstream", 3)
_ATTRIBUTES, _CRC = 21, 17  # byte offsets in a v2 record batch header
_CONTROL = 0x20
GZIP = 1


def _identity(value: bytes | None) -> bytes | None:
    return value  # a stock consumer's deserializer: anything but lean_value


def _batch(
    base: int,
    count: int,
    producer_id: int = -1,
    *,
    control: int | None = None,
    compression: int = 0,
) -> bytes:
    """``count`` records from offset ``base``; ``control``: an abort (0) or commit (1) marker;
    ``compression``: a Kafka codec id (1: gzip)."""
    transactional = producer_id >= 0
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=0 if transactional else -1,
        base_sequence=0 if transactional else -1,
        batch_size=1 << 20,
    )
    for i in range(count):
        if control is not None:
            key, value = struct.pack(">hh", 0, control), b""
        else:
            key, value = b"u%d" % (base + i), f'{{"n":{base + i}}}'.encode()
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)
    if control is not None:
        attributes = struct.unpack_from(">h", data, _ATTRIBUTES)[0] | _CONTROL
        struct.pack_into(">h", data, _ATTRIBUTES, attributes)
        struct.pack_into(">I", data, _CRC, calc_crc32c(bytes(data[_ATTRIBUTES:])))
    return bytes(data)


def _fetch(
    raw: bytes, fetch_offset: int, deserializer: Any, isolation: int, aborted: list[Any]
) -> tuple[FetchResult, Assignment]:
    assignment = Assignment([TP])
    assignment.state_value(TP).seek(fetch_offset)
    records = PartitionRecords(
        TP, MemoryRecords(raw), list(aborted), fetch_offset, None, deserializer, True, isolation
    )
    return FetchResult(TP, assignment=assignment, partition_records=records, backoff=0), assignment


def _drain(
    raw: bytes,
    fetch_offset: int,
    deserializer: Any,
    limits: list[int | None],
    isolation: int,
    aborted: list[Any],
) -> list[Any]:
    """Per getall call: (offsets, position, exhausted), then the records one by one."""
    result, assignment = _fetch(raw, fetch_offset, deserializer, isolation, aborted)
    state = assignment.state_value(TP)
    seen: list[Any] = []
    for limit in limits:
        if not result.has_more():
            break
        taken = result.getall(limit)
        seen.append(([r.offset for r in taken], state.position, result.has_more()))
    while result.has_more():  # the rest through getone, the other way records are handed out
        record = result.getone()
        seen.append((None if record is None else record.offset, state.position))
    return seen


@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    assert install()


@st.composite
def fetches(draw: st.DrawFn) -> tuple[bytes, int, list[Any], list[int | None], int]:
    """A fetch response's records: plain, transactional and control batches, in offset order."""
    raw, offset, aborted = b"", draw(st.integers(0, 1_000)), []
    first = offset
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["plain", "txn", "abort", "commit"]))
        producer = draw(st.integers(1, 2))
        if kind == "plain":
            count = draw(st.integers(1, 40))
            raw += _batch(offset, count, compression=draw(st.sampled_from([0, GZIP])))
        elif kind == "txn":
            count = draw(st.integers(1, 20))
            raw += _batch(offset, count, producer)
            if draw(st.booleans()):
                aborted.append((producer, offset))
        else:
            count = 1
            raw += _batch(offset, 1, producer, control=0 if kind == "abort" else 1)
        offset += count
    fetch_offset = draw(st.integers(first, offset - 1))
    limits = draw(st.lists(st.one_of(st.none(), st.integers(1, 60)), max_size=6))
    return raw, fetch_offset, aborted, limits, draw(st.sampled_from([0, READ_COMMITTED]))


@settings(max_examples=300, deadline=None)
@given(fetches())
async def test_lean_hand_out_equals_aiokafkas(fetch: Any) -> None:
    raw, fetch_offset, aborted, limits, isolation = fetch
    lean = _drain(raw, fetch_offset, lean_value, limits, isolation, aborted)
    stock = _drain(raw, fetch_offset, _identity, limits, isolation, aborted)
    assert lean == stock


async def test_records_are_aiokafkas_own_and_batches_are_taken_whole() -> None:
    raw = _batch(0, 5) + _batch(5, 5)
    result, _ = _fetch(raw, 2, lean_value, 0, [])
    assert type(result._partition_records._records_iterator) is LeanRecords
    taken = result.getall(None)
    assert [r.offset for r in taken] == list(range(2, 10))  # before the fetch offset: skipped
    assert (taken[0].key, taken[0].value) == (b"u2", b'{"n":2}')
    assert not result.has_more()


async def test_a_stock_consumer_still_gets_consumer_records() -> None:
    result, _ = _fetch(_batch(0, 3), 0, _identity, 0, [])
    taken = result.getall(2)
    assert [type(r).__name__ for r in taken] == ["ConsumerRecord", "ConsumerRecord"]
    assert taken[1].topic == TP.topic


async def test_a_corrupt_batch_raises_as_aiokafkas_does() -> None:
    good, bad = _batch(0, 3), bytearray(_batch(3, 3))
    bad[-1] ^= 0xFF  # a record byte: the CRC no longer matches
    for deserializer in (lean_value, _identity):
        result, _ = _fetch(good + bytes(bad), 0, deserializer, 0, [])
        with pytest.raises(CorruptRecordException):
            result.getall(None)


async def test_a_moved_position_drops_the_fetch() -> None:
    result, assignment = _fetch(_batch(0, 10), 0, lean_value, 0, [])
    assert len(result.getall(4)) == 4
    assignment.state_value(TP).seek(0)  # the consumer re-seeked meanwhile
    assert result.getall(4) == []
    assert not result.has_more()


async def test_a_drained_fetch_is_freed_without_the_cycle_collector() -> None:
    # It holds the fetch response's buffer (MBs): left to the (tuned, rare) cycle collection,
    # a worker's peak memory grew by 100-200 MB.
    for limits in ([None], [7, 7, 7], [10, 1]):
        result, _ = _fetch(_batch(0, 5) + _batch(5, 5), 0, lean_value, 0, [])
        owner = weakref.ref(result._partition_records)
        gc.disable()
        try:
            for limit in limits:
                if result.has_more():
                    result.getall(limit)
            assert not result.has_more()
            del result
            assert owner() is None
        finally:
            gc.enable()
