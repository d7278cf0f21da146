"""Fold one partition's records into deltas: decode, validate, watermark, dispatch. Pure.

The loop is :mod:`stream.engine.fold_core`'s, run compiled when built; its types live in
:mod:`stream.engine.fold_types`. The rest of the code imports both from here.

The watermark (highest event time seen on the partition − allowed lateness) advances record by
record in offset order and is carried between batches (stored in Redis with the offset), so the
late/not-late decision for a record never depends on how the stream was cut into batches — a
replay decides exactly as the first run did.

Relayed records (other families' score inputs re-published into the home topic, marked by a
Kafka header: :mod:`stream.engine.relay`) take a side path on the partitions that accept them:
exactly-once by their lane's sequence number, then only the customer-state handlers. They are
judged late against the watermark like any event but do not move it, and they bypass the
``event_id`` window (their source partition deduplicated them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.engine import compiled, fold_core
from stream.engine.fold_types import (
    ACTIVE_SET,
    EVENT_FIELD_PREFIX,
    FoldContext,
    FoldResult,
    Handler,
    Record,
    Rejected,
)

__all__ = [
    "ACTIVE_SET",
    "EVENT_FIELD_PREFIX",
    "FoldContext",
    "FoldResult",
    "Handler",
    "Record",
    "Rejected",
    "fold_records",
]

if TYPE_CHECKING:
    from stream.engine.fold_core import fold_records
else:
    fold_records = compiled.load(fold_core).fold_records
