"""Relay: other families' score inputs re-published into the home topic, applied exactly once.

Customer scores live on the home (clickstream) partitions, because one customer's score must be
decided inside one partition's offset-guarded apply. Activities and health inputs of the other
families (likes, renewals, tickets, survey answers) arrive on their own topics, so their
partitions hand them over:

1. **Source side.** A non-home partition's batch turns the customer-state items its fold
   collected (events whose type is a score activity or a health input) into relay messages, one
   outbox per *lane* = (source shard, home partition): ``P:{<family>.<p>}:ob:relay.<h>``, where
   ``h`` is the home partition the user's clickstream goes to (Kafka's default partitioner:
   murmur2 of the user id, as apps and :mod:`stream.tools.routing` key). Op ``X`` of the apply
   numbers each lane's messages 1, 2, 3, ... in the same offset-guarded call as the batch, so a
   message exists exactly once.
2. **Publisher** (:class:`RelayPublisher`): the owner of the source shard sends each lane to
   partition ``h`` of the home topic in sequence order, with the header ``es-relay:
   <source shard>:<seq>``, waits for every ack, then trims. It never asks Kafka what it already
   sent (other apps write the home topic, so its tail proves nothing): after any failure or a
   crash it sends again whatever the outbox still holds.
3. **Home side** (:func:`stream.engine.fold.fold_records`): the home shard keeps, per source shard,
   the highest relay seq it applied (``relay_hw|<source shard>`` in its partition state, written
   with the offset). A relayed record is applied only when its seq is exactly the next one;
   ``seq <= high-water`` is a re-send of something applied (``duplicate``), ``seq > next`` means an
   earlier message of the lane is missing (``out_of_order``). Neither is bad input, so neither
   goes to the dead-letter topic; both are counted in ``stream_relay_received_total``.

Why the next seq exactly, not ``> high-water``: a send that fails after a later one to the same
partition succeeded leaves a gap; a plain high-water mark would then drop the late re-send of the
failed message forever. With the rule above the later message is dropped too, the publisher (which
trims only after a pass whose every send was acked) sends the whole run again, and the re-send
fills the gap in order. A pass whose every send was acked is in the log in send order (aiokafka has
at most one request in flight per partition and re-queues a retried batch in front), so a trim
never forgets a message the home side has not applied -- whatever crashes, zombies or failed sends
came before (docs/architecture.md gives the argument).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from stream.contract.identity import key_partition
from stream.contract.types import Family
from stream.engine.deltas import Deltas
from stream.engine.outbox import OutboxPublisher

__all__ = [
    "APPLIED",
    "DUPLICATE",
    "HEADER",
    "HW_PREFIX",
    "OUTBOX",
    "OUT_OF_ORDER",
    "BadHeader",
    "RelayConfig",
    "RelayPublisher",
    "Relayed",
    "admit",
    "collect",
    "home_partition",
    "hw_fields",
    "hw_from_state",
    "lane",
    "parse_header",
]

log = logging.getLogger(__name__)

#: Kafka header that marks a relayed record: ``<source shard>:<seq>``.
HEADER = "es-relay"
#: Outbox name of a lane: ``relay.<home partition>``.
OUTBOX = "relay"
#: Partition-state field of the home shard holding the highest seq applied per source shard.
HW_PREFIX = "relay_hw|"

APPLIED, DUPLICATE, OUT_OF_ORDER = "applied", "duplicate", "out_of_order"

_FAMILIES = frozenset(f.value for f in Family)
_MAX_PARTITION = 1 << 20


@dataclass(frozen=True)
class RelayConfig:
    """Who relays what where (stream.service.app builds it from ``score.relay_families``)."""

    #: keyed state whose items are relayed (customer scores), hosted on the home family
    state: str
    home_family: str
    home_topic: str
    #: families whose partitions relay (empty: none; relayed records still apply at home)
    families: frozenset[str]


def lane(partition: int) -> str:
    """Outbox name of the lane to home partition ``partition``."""
    return f"{OUTBOX}.{partition}"


def home_partition(user_id: str, partitions: int) -> int:
    """The home partition of a user: Kafka's default partitioner for the key ``user_id``."""
    return key_partition(user_id.encode(), partitions)


class Relayed(Protocol):
    """An item of the relayed state (customer scores: ``stream.metrics.score.touch``)."""

    user_id: str

    def relay_message(self) -> str:
        """The item as a native-envelope event, the relayed record's value."""
        ...


def collect(deltas: Deltas, state: str, partitions: int) -> int:
    """Turn a source batch's items of ``state`` into lane outbox messages; how many."""
    per_user: dict[str, list[Relayed]] = deltas.keyed.pop(state, {})
    n = 0
    for user, items in per_user.items():
        messages = deltas.outbox.setdefault(lane(home_partition(user, partitions)), [])
        for item in items:
            messages.append(item.relay_message())
        n += len(items)
    return n


class BadHeader(ValueError):
    pass


def parse_header(headers: Sequence[tuple[str, bytes | None]]) -> tuple[str, int] | None:
    """(source shard, seq) of a relayed record; None when it carries no relay header.

    Raises :class:`BadHeader` for a malformed one: the shard name becomes a hash field of the
    partition state, so only ``<known family>.<partition>`` is accepted.
    """
    for key, value in headers:
        if key != HEADER:
            continue
        try:
            shard, _, seq_text = (value or b"").decode("ascii").rpartition(":")
            family, _, part = shard.partition(".")
            seq = int(seq_text)
            ok = family in _FAMILIES and part.isdigit() and int(part) < _MAX_PARTITION
        except (UnicodeDecodeError, ValueError):
            ok = False
        if not ok or seq < 1 or str(int(part)) != part:
            raise BadHeader(f"malformed {HEADER} header {value!r:.80}")
        return shard, seq
    return None


def admit(hw: dict[str, int], shard: str, seq: int) -> str:
    """Decide one relayed record against the home shard's high-water marks (updated in place)."""
    last = hw.get(shard, 0)
    if seq == last + 1:
        hw[shard] = seq
        return APPLIED
    return DUPLICATE if seq <= last else OUT_OF_ORDER


def hw_fields(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Partition-state fields to store with a batch's offset: the marks it moved."""
    return {HW_PREFIX + s: seq for s, seq in after.items() if before.get(s) != seq}


def hw_from_state(state: Mapping[str, bytes | str | int]) -> dict[str, int]:
    """High-water marks out of a partition-state hash."""
    return {f[len(HW_PREFIX) :]: int(v) for f, v in state.items() if f.startswith(HW_PREFIX)}


class _UserOnly(msgspec.Struct):
    user_id: str = ""


_user_decoder = msgspec.json.Decoder(_UserOnly)


class RelayPublisher(OutboxPublisher):
    """Publishes every lane of the source shards this worker owns to the home topic.

    ``owned()`` yields (source shard, home partition) pairs: one per lane. Unlike churn
    transitions, nothing is recovered from the topic: the outbox is sent again from its head
    after any failure and the home side drops what it already applied.
    """

    def outbox_key(self, shard: str, partition: int) -> str:
        return self.keys.outbox(shard, lane(partition))

    async def recover(self, shard: str, partition: int, key: str) -> int:
        return 0

    def record(
        self, shard: str, seq: int, payload: bytes
    ) -> tuple[bytes, bytes, list[tuple[str, bytes]], str]:
        user = _user_decoder.decode(payload).user_id
        header = f"{shard}:{seq}".encode()
        return payload, user.encode(), [(HEADER, header)], shard.partition(".")[0]
