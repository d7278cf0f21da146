"""The one place Redis key names are built. Nothing else formats a key.

Scheme (``P`` = the configured prefix, default ``es``)::

    P:{<family>.<partition>}:state                    partition progress: offset, max event time
    P:{<family>.<partition>}:c:<g>:<start>            counters of one window (hash)
    P:{<family>.<partition>}:u:<g>:<start>:<set>      distinct users of one window (HyperLogLog)
    P:{<family>.<partition>}:x:<g>:<start>:<name>     per-window state of a metric family (hash)
    P:{<family>.<partition>}:k:<name>                 open keyed state, e.g. sessions (hash)
    P:{<family>.<partition>}:kd:<name>                when each keyed entry is due (sorted set)
    P:{<family>.<partition>}:t:<name>                 running totals, never expire (hash): levels,
                                                      lifetime values, customers per band
    P:{<family>.<partition>}:z:<name>                 a ranking, e.g. at-risk customers (sorted set)
    P:{<family>.<partition>}:ob:<name>                outbox to Kafka, sequenced (stream)
    P:shards                                          the shards that exist (set, read side)
    P:placement                                       how shards map to hash tags (string)

``<g>`` is ``m``/``h``/``d``; ``<start>`` the window start in epoch seconds.

Redis Cluster: one hash tag per shard puts every key one input partition writes into one slot,
so the function that applies a batch together with its offset stays atomic and cluster-legal.
The tag is ``<family>.<partition>`` itself, or with the default ``spread`` placement that name
plus a suffix that puts the partitions evenly over the slot space (:mod:`.placement`); the
scheme above writes ``{<family>.<partition>}`` for either. A shard keeps its name everywhere
else (``P:shards``, outbox message ids, relay high-water marks): only key names carry the tag.
The read side sums counters and merges HyperLogLogs across shards.

Injection safety: user-controlled text (campaign, page, feature names, user ids inside hash
fields) is percent-encoded by :func:`escape`, so it can contain neither ``:`` nor ``{``/``}``
nor the field separator, and two different values can never produce the same key or field.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, unquote

from stream.engine.placement import Placement, spread_tag

__all__ = ["FIELD_SEP", "Keys", "escape", "field", "unescape"]

#: Separates parts of a hash field; never appears in an escaped value.
FIELD_SEP = "|"


@lru_cache(maxsize=65_536)
def escape(value: str) -> str:
    """Percent-encode everything outside ``[A-Za-z0-9_.~-]``: injective and delimiter-free."""
    return quote(value, safe="")


def unescape(value: str) -> str:
    return unquote(value)


def field(*parts: str) -> str:
    """A hash field from already-escaped or constant parts."""
    return FIELD_SEP.join(parts)


class Keys:
    def __init__(self, prefix: str, placement: Placement = Placement.SPREAD) -> None:
        self.prefix = prefix
        self.placement = Placement(placement)
        self.shards = f"{prefix}:shards"
        self.placement_marker = f"{prefix}:placement"
        self._tags: dict[str, str] = {}

    def shard(self, family: str, partition: int) -> str:
        return f"{family}.{partition}"

    def tag(self, shard: str) -> str:
        """The hash tag of a shard's keys (without braces) under this placement."""
        tag = self._tags.get(shard)
        if tag is None:
            if self.placement is Placement.PARTITION:
                tag = shard
            else:
                family, _, partition = shard.rpartition(".")
                tag = spread_tag(family, int(partition))
            self._tags[shard] = tag
        return tag

    def state(self, shard: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:state"

    def counters(self, shard: str, g: str, start: int) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:c:{g}:{start}"

    def users(self, shard: str, g: str, start: int, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:u:{g}:{start}:{name}"

    def extra(self, shard: str, g: str, start: int, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:x:{g}:{start}:{name}"

    def keyed(self, shard: str, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:k:{name}"

    def keyed_due(self, shard: str, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:kd:{name}"

    def totals(self, shard: str, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:t:{name}"

    def zset(self, shard: str, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:z:{name}"

    def outbox(self, shard: str, name: str) -> str:
        return f"{self.prefix}:{{{self.tag(shard)}}}:ob:{name}"

    def scan_pattern(self) -> str:
        """All keys of this deployment (tests, cleanup)."""
        return f"{self.prefix}:*"
