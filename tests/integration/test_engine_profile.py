"""`stream engine-profile` runs the engine's batch path for real: every record applied, in order."""

from __future__ import annotations

import pytest

from stream.config.settings import Settings
from stream.config.wiring import build_keys
from stream.engine import store
from stream.infra.connections import redis_target
from stream.tools.engine_profile import PHASES, partitioned, profile


@pytest.mark.parametrize("mix", ["clickstream", "all"])
async def test_profile_applies_every_record(settings: Settings, mix: str) -> None:
    settings = settings.with_overrides(batch_max_records=1_000)
    parts = partitioned(settings, 4_000, 300, mix, seed=3, partitions=3)
    assert sum(len(p.records) for p in parts) == 4_000
    result = await profile(settings, parts, settings.batch_max_records)
    assert result.events == 4_000
    assert result.batches >= 4_000 // 1_000
    assert all(result.phase_s[name] > 0 for name in PHASES)
    client = store.connect(redis_target(settings))
    try:
        for part in parts:
            stored = await store.read_progress(client, build_keys(settings), part.shard)
            assert stored.offset == len(part.records) - 1
    finally:
        await client.aclose()
    assert f"{4_000:,} events" in result.report()
    # Redis's side: the functions' time holds the commands they call (counted apart, too).
    usec = result.redis_usec
    assert result.redis_cpu_s > 0
    assert usec["fcall"] > 0 and usec["fcall_ro"] > 0
    assert {"hset", "pfadd", "hmget"} <= set(usec)
    called = sum(s for n, s in usec.items() if n not in ("fcall", "fcall_ro", "info"))
    assert 0 < called < usec["fcall"] + usec["fcall_ro"]
    assert "Lua" in result.report()


async def test_footprint_accounts_for_every_stored_key(settings: Settings) -> None:
    parts = partitioned(settings, 3_000, 200, "clickstream", seed=5, partitions=2)
    result = await profile(settings, parts, 1_000, footprint=True)
    kinds = {kind: (n, stored) for kind, n, stored in result.footprint}
    assert {"state", "c:m", "c:h", "c:d", "u:m:active", "k:ses", "k:cus"} <= set(kinds)
    assert kinds["state"][0] == len(parts)  # one progress hash per partition
    assert [s for _, _, s in result.footprint] == sorted((s for _, _, s in result.footprint),
                                                         reverse=True)  # fmt: skip
    client = store.connect(redis_target(settings))
    try:
        every = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*")]
        total = sum([int(await client.memory_usage(k, samples=0) or 0) for k in every])
    finally:
        await client.aclose()
    assert sum(n for n, _ in kinds.values()) == len(every)
    assert sum(s for _, s in kinds.values()) == total
    assert result.users == len({r.key for p in parts for r in p.records})
    assert "B/user" in result.report()


async def test_setup_only_applies_nothing(settings: Settings) -> None:
    """The baseline of deploy/local/count-instructions.sh: the same setup, no batch."""
    parts = partitioned(settings, 2_000, 100, "clickstream", seed=3, partitions=2)
    result = await profile(settings, parts, 1_000, batches=False)
    assert result.events == 0 and result.batches == 0
    assert result.users == len({r.key for p in parts for r in p.records})  # same setup as a run
    client = store.connect(redis_target(settings))
    try:
        assert [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*")] == []
    finally:
        await client.aclose()


async def test_redis_ops_replays_each_kind_of_operation_faithfully(settings: Settings) -> None:
    """Each kind replayed alone writes what the run wrote with it: the counters of H (and the
    orphan-click counts Q moves) and the distinct users of P equal the run's own."""
    parts = partitioned(settings, 3_000, 200, "all", seed=5, partitions=2)
    result = await profile(settings, parts, 1_000, redis_ops=True)
    assert {"H", "P", "K", "A"} <= set(result.redis_cpu_by_op)
    assert all(seconds > 0 for seconds in result.redis_cpu_by_op.values())
    assert "replayed alone" in result.report()
    prefix = settings.key_prefix
    client = store.connect(redis_target(settings))
    try:
        own = [k.decode() async for k in client.scan_iter(match=f"{prefix}:*")]
        counters = [k for k in own if ":c:" in k]
        users = [k for k in own if ":u:" in k]
        assert counters and users
        for key in counters:
            written = {
                f: int(v)
                for f, v in (await client.hgetall(f"{prefix}-h{key[len(prefix) :]}")).items()
            }
            for f, v in (await client.hgetall(f"{prefix}-q{key[len(prefix) :]}")).items():
                written[f] = written.get(f, 0) + int(v)
            own_fields = {f: int(v) for f, v in (await client.hgetall(key)).items()}
            nonzero = {f: v for f, v in written.items() if v}  # Q may take back what it added
            assert nonzero == {f: v for f, v in own_fields.items() if v}, key
        for key in users:
            replayed = f"{prefix}-p{key[len(prefix) :]}"
            assert await client.pfcount(key) == await client.pfcount(replayed), key
    finally:
        await client.aclose()
