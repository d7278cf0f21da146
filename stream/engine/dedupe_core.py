"""The recent-id window of one partition (:mod:`stream.engine.dedupe` says why). Pure.

The only source of its code; also built compiled (``dedupe_core_compiled.pxd``, see
:mod:`stream.engine.compiled`), where the table's arrays are typed memoryviews.
"""

from __future__ import annotations

from array import array

__all__ = ["MIN_SLOTS", "PartitionWindow"]

#: Slots of a new table (it doubles with the partition's traffic).
MIN_SLOTS = 16


class PartitionWindow:
    """The recent-id window of one partition. ``size`` 0 turns detection off.

    An event is a duplicate when an event with the same id decoded at one of the ``size``
    preceding offsets — whether that one was counted or was a duplicate itself. Looking only at
    the preceding offsets (never at earlier decisions) is what makes a re-read of the ``size``
    records before any position rebuild exactly the window the previous owner had.

    A table of id hash -> latest offset it was seen at decides: a duplicate when that offset is
    within ``size`` of the new one. Open addressing with linear probing over one array of slots,
    each a hash and its offset side by side (offset -1 marks a slot never used), so that a probe
    touches one cache line, not one in each of two arrays: at the default window a partition's
    table is 4 MB, and nearly every event's probe misses the CPU caches. A slot whose offset
    fell out of the window is free for a new id, and once half the slots have been used the
    table is rebuilt with only the ids still in the window, so probe runs stay short and expired
    ids are dropped in bulk, not one by one per event. A rebuild doubles the table while those
    ids fill a quarter of it or more, up to the power of two at or above 4 x ``size`` (``size``
    ids at most): a partition holds what its traffic needs, so an idle one costs a few hundred
    bytes.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        largest = MIN_SLOTS
        while largest < 4 * size:
            largest *= 2
        self._largest = largest
        self._mask = MIN_SLOTS - 1
        self._slots = _empty(MIN_SLOTS)
        self._used = 0  # slots ever filled since the table was (re)built
        self._latest = -1  # the highest offset admitted

    def admit(self, offset: int, event_id: str) -> bool:
        """True for a first sighting within the window; False for a duplicate."""
        if not self.size:
            return True
        h = hash(event_id)
        slots = self._slots
        mask = self._mask
        horizon = offset - self.size  # seen at or before it: out of the window
        if offset > self._latest:
            self._latest = offset
        i = h & mask
        free = -1  # the first expired slot on the probe run: where a new id goes
        seen = slots[2 * i + 1]
        while seen >= 0:
            if slots[2 * i] == h:
                slots[2 * i + 1] = offset
                return seen <= horizon
            if free < 0 and seen <= horizon:
                free = i
            i = (i + 1) & mask
            seen = slots[2 * i + 1]
        if free >= 0:
            i = free
        else:
            self._used += 1
        slots[2 * i] = h
        slots[2 * i + 1] = offset
        if 2 * self._used > mask:
            self._rebuild(horizon)
        return True

    def _rebuild(self, horizon: int) -> None:
        """The table with only the ids seen after ``horizon``, doubled while they fill a quarter
        of it or more (up to the largest)."""
        slots = self._slots
        live = 0
        for j in range(self._mask + 1):
            if slots[2 * j + 1] > horizon:
                live += 1
        capacity = self._mask + 1
        while 4 * live >= capacity and capacity < self._largest:
            capacity *= 2
        mask = capacity - 1
        fresh = _empty(capacity)
        for j in range(self._mask + 1):
            seen = slots[2 * j + 1]
            if seen > horizon:
                h = slots[2 * j]
                i = h & mask
                while fresh[2 * i + 1] >= 0:
                    i = (i + 1) & mask
                fresh[2 * i] = h
                fresh[2 * i + 1] = seen
        self._mask = mask
        self._slots = fresh
        self._used = live

    @property
    def capacity(self) -> int:
        """Slots in the table now (from MIN_SLOTS up to the power of two at or above 4 x size)."""
        return self._mask + 1

    def warm_start(self, stored_offset: int) -> int:
        """Where to start reading so that the window is rebuilt before ``stored_offset + 1``."""
        return max(0, stored_offset + 1 - self.size)

    def __len__(self) -> int:
        """Distinct ids within ``size`` offsets of the latest one admitted."""
        horizon = self._latest - self.size
        slots = self._slots
        return sum(1 for j in range(1, len(slots), 2) if slots[j] > horizon)


def _empty(capacity: int) -> array[int]:
    """``capacity`` slots never used: hash 0, offset -1 each."""
    return array("q", [0, -1]) * capacity
