"""Whose event a message is: the one rule the decoder attributes events by and producers key by.

The Kafka key decides the partition, and the worker relies on one user's events sharing a
partition (sessions, orphan-click lookups and watermarks are per partition). A producer that keys
by a different id than the decoder attributes the event to — ``user_id`` where the decoder takes
``userId`` — splits a user over partitions. So both sides call :func:`message_user_id` instead of
each spelling out the precedence.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["SEGMENT_CALLS", "key_partition", "message_user_id"]

#: Segment/RudderStack call types the decoder maps (``identify`` is also our native type, decoded
#: the Segment way).
SEGMENT_CALLS: frozenset[str] = frozenset({"page", "screen", "track", "identify"})


def message_user_id(
    kind: object, user_id: str | None, userId: str | None, anonymousId: str | None
) -> str | None:
    """The user a message of type ``kind`` belongs to; None or "" when it has none.

    Segment calls: ``userId``, then ``anonymousId``, then ``user_id`` (first non-empty). Every
    other type, native or unknown: ``user_id`` only. The decoder's fast path for native types
    reads ``user_id`` directly — the second branch, without the call.
    """
    if kind in SEGMENT_CALLS:
        return userId or anonymousId or user_id
    return user_id


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's: murmur2 of the key)
    puts ``key`` in: where a user's events land when apps key them by :func:`message_user_id`."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
