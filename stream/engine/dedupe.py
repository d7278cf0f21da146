"""Producer-duplicate detection by ``event_id``: a sliding window over a partition's recent events.

Exactly-once in Redis is per Kafka offset; a producer that re-sends an event (a retry after a
lost ack, an SDK flushing its queue twice) gives it a *new* offset. The contract says
``event_id`` is unique, so the engine treats an event as a duplicate when its id was already
seen among the last ``size`` distinct events of the same partition (an SDK's resend goes to the
same partition: it carries the same key).

The rule is a pure function of the partition's log: an event is a duplicate when an event with
the same id decoded at one of the ``size`` preceding offsets. That is what keeps it exact across
crashes and rebalances: a worker that takes a partition over re-reads the ``size`` records
before the stored offset into a fresh window (from :meth:`PartitionWindow.warm_start`, driven by
the consumer) before it counts anything, so it decides exactly as the previous owner would
have, whatever the batch boundaries.

Ids are kept as Python hashes (64-bit, salted per process — consistent within one worker's
life, which is all a window lives), not the id strings, in an open-addressing table of (hash,
latest offset) pairs: 16 bytes a slot. The table grows with the partition's traffic, up to the
power of two at or above 4 × ``size`` slots: 4 MB for the default 50,000 (a dict of the same
pairs held 170–240 bytes per ``size``); an idle partition's holds 16 slots. Two different
ids collide with a probability of about size² / 2⁶⁴ per window (≈ 10⁻¹⁰ for 50,000), in which
case the later event is reported as a duplicate — to the dead-letter topic, never silently.

The check runs once per event, so the table is a compiled core (:mod:`stream.engine.compiled`):
:mod:`stream.engine.dedupe_core` is its only source, built with Cython, typed by
``dedupe_core_compiled.pxd``. Built, a check costs about half what the dict did (~250 against
~480 ns per event with the loop around it); run as Python, about twice (~950 ns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.engine import compiled
from stream.engine import dedupe_core as source

__all__ = ["CORE", "PartitionWindow"]

if TYPE_CHECKING:
    from stream.engine.dedupe_core import PartitionWindow
else:
    PartitionWindow = compiled.load(source).PartitionWindow
#: Which build of the window this process runs: "compiled" or "python".
CORE = "compiled" if compiled.CORES.get(source.__name__) else "python"
