"""The encoding of orphan-click pair state in a batch's operations (apply.lua op Q).

tests/integration/test_orphan_pairs.py runs the operations on a real Redis.
"""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_layout
from stream.engine.deltas import (
    _FIXSTR7,
    ADPAIR_HASHES,
    LEGACY_ADPAIRS,
    ApplyOps,
    Deltas,
    _orphan_pairs,
    adpairs_key_name,
    build_call,
    pair_digest,
    pair_digest_bytes,
)
from stream.engine.windows import Windows

SETTINGS = Settings(kafka_bootstrap_servers="unused", redis_url="unused", key_prefix="es")
WINDOWS = Windows(SETTINGS.zone)
LAYOUT = build_layout(SETTINGS, WINDOWS)
NOW = 1_800_000_000
DAY = WINDOWS.start_of("day", NOW)


def test_digests_are_the_ones_stored_before() -> None:
    """Open sessions and the orphan pairs of the layout before are addressed by these."""
    assert pair_digest("u1", "s1") == "f0d8dcd1de2c3d56"
    assert pair_digest("u1", "c", "p") == "efee46e63979d88b"
    assert pair_digest("a\x00b", "c") == "7930a17189e1d12e"  # the framed domain
    assert pair_digest_bytes("u1", "c", "p") == bytes.fromhex("efee46e63979d88b")


@given(st.binary(min_size=7, max_size=7))
def test_binary_fields_travel_as_messagepack_str(value: bytes) -> None:
    """cmsgpack (Redis's Lua) rejects the bin types: a fixstr of the raw bytes instead."""
    assert bytes((0xA0 | len(value),)) == _FIXSTR7
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return
    encoded = msgspec.msgpack.encode([msgspec.Raw(_FIXSTR7 + value), 1])
    assert msgspec.msgpack.decode(encoded) == [text, 1]


def _pairs(users: list[str], days: list[int]) -> dict[tuple[int, str, str, str], list[int | str]]:
    return {(d, u, "c", "p"): [i % 2, 1, "orph|c|p"] for d in days for i, u in enumerate(users)}


@given(st.sets(st.text(max_size=12), min_size=1, max_size=300))
def test_each_pair_goes_to_the_hash_its_digest_picks_once(users: set[str]) -> None:
    days = [DAY - 86400, DAY]
    pairs = _pairs(sorted(users), days)
    call = ApplyOps("state")
    _orphan_pairs(call, pairs, LAYOUT, "clickstream.0", NOW)
    keys = LAYOUT.keys
    seen: dict[tuple[int, bytes], tuple[int, int]] = {}
    ops, i = call.ops, 0
    for _ in range(call.n_ops):
        assert ops[i] == "Q"
        name, expire_at, n = call.keys[int(ops[i + 1]) - 1], int(ops[i + 2]), int(ops[i + 3])
        counters, legacy = call.keys[int(ops[i + 4]) - 1], call.keys[int(ops[i + 5]) - 1]
        bucket = int(str(ops[i + 6]), 16)
        day = next(d for d in days if keys.counters("clickstream.0", "d", d) == counters)
        assert name == keys.extra("clickstream.0", "d", day, adpairs_key_name(bucket))
        assert legacy == keys.extra("clickstream.0", "d", day, LEGACY_ADPAIRS)
        assert expire_at >= WINDOWS.end_of("day", day) + 3 * 86400
        i += 7
        for _ in range(n):
            raw = bytes(ops[i])  # type: ignore[arg-type]
            assert raw[0] == 0xA7 and len(raw) == 8
            seen[(day, bytes((bucket,)) + raw[1:])] = (int(ops[i + 2]), int(ops[i + 3]))
            assert ops[i + 1] == "orph|c|p"
            i += 4
    assert i == len(ops)
    expected = {
        (d, pair_digest_bytes(u, c, p)): (int(e[0]), int(e[1])) for (d, u, c, p), e in pairs.items()
    }
    assert seen == expected


def test_a_call_names_only_the_hashes_it_touches_and_at_most_256_a_day() -> None:
    deltas = Deltas()
    deltas.orphan_pairs = _pairs([f"u{i}" for i in range(5000)], [DAY])
    keys, _ = build_call(deltas, LAYOUT, "clickstream.0", -1, 0, 0, NOW)
    assert sum(":adpairs:" in k for k in keys) == ADPAIR_HASHES
    assert sum(k.endswith(":" + LEGACY_ADPAIRS) for k in keys) == 1
    tag = "{" + LAYOUT.keys.state("clickstream.0").split("{")[1].split("}")[0] + "}"
    assert all(tag in k for k in keys)  # one hash slot: the apply stays cluster-legal
    deltas.orphan_pairs = _pairs(["u1"], [DAY])
    keys, _ = build_call(deltas, LAYOUT, "clickstream.0", -1, 0, 0, NOW)
    assert sum(":adpairs:" in k for k in keys) == 1
