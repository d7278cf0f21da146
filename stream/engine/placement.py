"""Where each input partition's keys live in a Redis Cluster's slot space.

Every key one input partition writes carries one hash tag (:mod:`stream.engine.keys`), so a batch
and its offset land in one slot and apply atomically. Which slot is a function of the tag, and
with the plain tag ``<family>.<partition>`` that function is CRC16: effectively random. The eight
clickstream partitions then sit on slots 9152, 13281, 898, 5027, 9028, 13157, 774 and 4903 —
four of them in the first third of the slot space, so on a 3-primary cluster one primary does
half the clickstream work and another a quarter.

Two placements, chosen by the ``redis_placement`` setting and recorded in Redis
(:func:`stream.engine.store.check_placement`):

``partition``
    The tag is the shard name, ``<family>.<partition>`` (what every release before placements
    wrote).
``spread`` (the default)
    Partition ``p`` of a family gets a point on the slot ring: the base-2 van der Corput point of
    ``p`` (0, 1/2, 1/4, 3/4, 1/8, …), turned by an offset per family so the families interleave.
    Its tag is ``<family>.<p>.<suffix>``, the smallest base-36 suffix whose CRC16 slot is exactly
    that point's slot. The first ``2^j`` points are equally spaced, so with a power-of-two number
    of partitions any ``k`` equal slot ranges (the layout ``redis-cli --cluster create`` makes)
    each hold ⌊n/k⌋ or ⌈n/k⌉ of a family's partitions (8 on 3 primaries: 3/3/2), and with the five
    families turned by 1/40 of the ring apart, their 40 partitions are equally spaced too. The
    sequence is prefix-stable: adding partitions never moves an existing one.

A partition's tag is a pure function of its family, number and the placement, so the read side
computes it from the shard names in ``P:shards`` without any stored table.
"""

from __future__ import annotations

from binascii import crc_hqx
from enum import StrEnum
from functools import lru_cache

from stream.contract.types import Family

__all__ = ["SLOTS", "Placement", "slot_of", "spread_tag", "target_slot"]

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Turn per family, as a fraction of the ring: with 8 partitions each, 40 equally spaced points.
_FAMILY_TURN = {family.value: i / (8 * len(Family)) for i, family in enumerate(Family)}
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class Placement(StrEnum):
    PARTITION = "partition"
    SPREAD = "spread"


def slot_of(tag: str) -> int:
    """The cluster slot of a hash tag (CRC16-XMODEM mod 16384, as Redis computes it)."""
    return crc_hqx(tag.encode(), 0) % SLOTS


def _van_der_corput(n: int) -> float:
    """The base-2 radical inverse of ``n``: 0, 1/2, 1/4, 3/4, 1/8, 5/8, …"""
    point, scale = 0.0, 0.5
    while n:
        if n & 1:
            point += scale
        n >>= 1
        scale /= 2
    return point


def _turn(family: str) -> float:
    # A family the table does not know (none today) still gets a stable, arbitrary turn.
    return _FAMILY_TURN.get(family, slot_of(family) / SLOTS)


def target_slot(family: str, partition: int) -> int:
    return int(((_van_der_corput(partition) + _turn(family)) % 1.0) * SLOTS)


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, d = divmod(n, 36)
        digits = _DIGITS[d] + digits
        if not n:
            return digits


@lru_cache(maxsize=4096)
def spread_tag(family: str, partition: int) -> str:
    """The ``spread`` tag of one partition: about 16,384 CRC16s (a few ms), cached."""
    target = target_slot(family, partition)
    stem = f"{family}.{partition}."
    n = 0
    while True:
        tag = stem + _base36(n)
        if slot_of(tag) == target:
            return tag
        n += 1
