"""Producer-duplicate detection by ``event_id``: a sliding window over a partition's recent events.

Exactly-once in Redis is per Kafka offset; a producer that re-sends an event (a retry after a
lost ack, an SDK flushing its queue twice) gives it a *new* offset. The contract says
``event_id`` is unique, so the engine treats an event as a duplicate when its id was already
seen among the last ``size`` distinct events of the same partition (an SDK's resend goes to the
same partition: it carries the same key).

The rule is a pure function of the partition's log: an event is a duplicate when an event with
the same id decoded at one of the ``size`` preceding offsets. That is what keeps
it exact across crashes and rebalances: a worker that takes a partition over re-reads the
``size`` records before the stored offset into a fresh window (:meth:`PartitionWindow.warm`,
driven by the consumer) before it counts anything, so it decides exactly as the previous owner
would have, whatever the batch boundaries.

Ids are kept as Python hashes (64-bit, salted per process — consistent within one worker's
life, which is all a window lives), not the id strings: ~170 bytes per ``size`` on average, 240
at most (tracemalloc), as expired ids are dropped in bulk once 2 × ``size`` are held. Two different
ids collide with a probability of about size² / 2⁶⁴ per window (≈ 10⁻¹⁰ for 50,000), in which
case the later event is reported as a duplicate — to the dead-letter topic, never silently.
"""

from __future__ import annotations

__all__ = ["PartitionWindow"]


class PartitionWindow:
    """The recent-id window of one partition. ``size`` 0 turns detection off.

    An event is a duplicate when an event with the same id decoded at one of the ``size``
    preceding offsets — whether that one was counted or was a duplicate itself. Looking only at
    the preceding offsets (never at earlier decisions) is what makes a re-read of the ``size``
    records before any position rebuild exactly the window the previous owner had.

    One dict, id hash -> latest offset it was seen at, decides: a duplicate when that offset is
    within ``size`` of the new one. Entries that fell out of the window are dropped in bulk
    once the dict holds twice ``size`` of them, not one by one per event: the check runs once
    per event on the hot path, and a per-event eviction (two deques, a pop from each) cost
    about as much as decoding the event.
    """

    __slots__ = ("_last", "_limit", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._limit = 2 * size
        self._last: dict[int, int] = {}  # id hash -> latest offset it was seen at

    def admit(self, offset: int, event_id: str) -> bool:
        """True for a first sighting within the window; False for a duplicate."""
        if not self.size:
            return True
        last = self._last
        h = hash(event_id)
        seen = last.get(h)
        last[h] = offset
        if seen is not None and seen > offset - self.size:
            return False
        if len(last) > self._limit:
            horizon = offset - self.size
            self._last = {k: v for k, v in last.items() if v > horizon}
        return True

    def warm_start(self, stored_offset: int) -> int:
        """Where to start reading so that the window is rebuilt before ``stored_offset + 1``."""
        return max(0, stored_offset + 1 - self.size)

    def __len__(self) -> int:
        """Distinct ids within ``size`` offsets of the latest one admitted."""
        if not self._last:
            return 0
        horizon = max(self._last.values()) - self.size
        return sum(1 for v in self._last.values() if v > horizon)
