"""Spread placement: input partitions evenly over a Redis Cluster's slots, stable as they grow."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.contract.types import Family
from stream.engine.keys import Keys
from stream.engine.placement import SLOTS, Placement, slot_of, spread_tag, target_slot
from stream.tools.placement_migration import renamed


def cluster_ranges(primaries: int) -> list[range]:
    """The slot ranges ``redis-cli --cluster create`` gives ``primaries`` primaries."""
    per = SLOTS / primaries
    edges = [round(i * per) for i in range(primaries)] + [SLOTS]
    return [range(edges[i], edges[i + 1]) for i in range(primaries)]


def owners(tags: list[str], primaries: int) -> Counter[int]:
    ranges = cluster_ranges(primaries)
    return Counter(next(i for i, r in enumerate(ranges) if slot_of(tag) in r) for tag in tags)


def test_slot_of_matches_redis_cluster_crc16() -> None:
    # Values from the Redis Cluster specification's reference implementation.
    assert slot_of("123456789") == 0x31C3 % SLOTS
    assert slot_of("foo") == 12182
    assert slot_of("clickstream.0") == 9152  # the unevenness this module exists for


def test_plain_tags_are_uneven_spread_tags_are_even() -> None:
    plain = [f"clickstream.{p}" for p in range(8)]
    assert max(owners(plain, 3).values()) == 4
    for family in Family:
        spread = [spread_tag(family.value, p) for p in range(8)]
        assert sorted(owners(spread, 3).values()) == [2, 3, 3], family


@pytest.mark.parametrize("partitions", [2, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("primaries", [2, 3, 4, 5, 6, 9])
def test_power_of_two_partitions_split_within_one(partitions: int, primaries: int) -> None:
    for family in Family:
        counts = owners([spread_tag(family.value, p) for p in range(partitions)], primaries)
        full = [counts.get(i, 0) for i in range(primaries)]
        assert max(full) - min(full) <= 1, (family, full)


def test_families_interleave() -> None:
    every = [spread_tag(f.value, p) for f in Family for p in range(8)]
    assert sorted(owners(every, 3).values()) == [13, 13, 14]
    assert len({slot_of(t) for t in every}) == len(every)


@given(st.sampled_from([f.value for f in Family]), st.integers(0, 1023))
def test_a_tag_lands_exactly_on_its_target_and_names_its_partition(
    family: str, partition: int
) -> None:
    tag = spread_tag(family, partition)
    assert slot_of(tag) == target_slot(family, partition)
    assert tag.startswith(f"{family}.{partition}.")
    assert "{" not in tag and "}" not in tag and "*" not in tag


def test_growing_partitions_moves_nothing() -> None:
    # The van der Corput sequence is prefix-stable: tags are a function of (family, p) alone.
    before = [target_slot("clickstream", p) for p in range(8)]
    after = [target_slot("clickstream", p) for p in range(16)]
    assert after[:8] == before


def test_keys_rename_only_the_tag() -> None:
    old, new = Keys("es", Placement.PARTITION), Keys("es", Placement.SPREAD)
    shard = "support.5"
    for name in (old.state(shard), old.counters(shard, "m", 60), old.keyed(shard, "ses")):
        moved = renamed(name, old.tag(shard), new.tag(shard))
        assert moved == name.replace("{support.5}", "{" + new.tag(shard) + "}")
        assert renamed(moved, new.tag(shard), old.tag(shard)) == name
    with pytest.raises(ValueError):
        renamed(old.state("support.6"), old.tag(shard), new.tag(shard))
