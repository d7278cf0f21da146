"""Producer-duplicate detection: the window's rule, its rebuild from the log, and the fold."""

from __future__ import annotations

import time

import orjson
from hypothesis import given
from hypothesis import strategies as st

from stream.config.settings import Settings
from stream.config.wiring import build_fold_context
from stream.contract.types import Reason
from stream.engine.dedupe import PartitionWindow
from stream.engine.dedupe_core import MIN_SLOTS
from stream.engine.fold import fold_records
from stream.engine.windows import Windows
from tests.support.events import event


def test_repeat_within_window_is_a_duplicate_and_expires_by_offset() -> None:
    w = PartitionWindow(3)
    assert w.admit(0, "a") and w.admit(1, "b")
    assert not w.admit(2, "a")  # seen at offset 0, within 3 offsets
    assert w.admit(3, "c")
    assert not w.admit(4, "a")  # the resend at offset 2 is within 3 offsets too
    assert w.admit(8, "a")  # offsets 5..7 carried no event: "a" is new again
    assert len(w) == 1


def test_size_zero_turns_detection_off() -> None:
    w = PartitionWindow(0)
    assert w.admit(0, "a") and w.admit(1, "a")


def _decide(log: list[str | None], size: int, start: int, warm_from: int = 0) -> list[bool]:
    """Decisions from offset `start` on, with a window fed from `warm_from` (None: no event)."""
    w = PartitionWindow(size)
    out = []
    for offset, ident in enumerate(log):
        if offset < warm_from or ident is None:
            continue
        admitted = w.admit(offset, ident)
        if offset >= start:
            out.append(admitted)
    return out


@given(
    log=st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), min_size=1, max_size=80),
    size=st.integers(1, 20),
    data=st.data(),
)
def test_a_window_rebuilt_from_the_log_decides_like_the_original(
    log: list[str | None], size: int, data: st.DataObject
) -> None:
    """What a worker taking a partition over does: re-read `size` records before the cut."""
    stored = data.draw(st.integers(-1, len(log) - 1))
    warm_from = PartitionWindow(size).warm_start(stored) if stored >= 0 else 0
    assert _decide(log, size, stored + 1, warm_from) == _decide(log, size, stored + 1)


def _naive(log: list[str | None], size: int) -> list[bool]:
    """The rule as stated: a duplicate when the same id decoded less than `size` offsets before
    (none with `size` 0)."""
    return [
        not any(log[j] == ident for j in range(max(0, offset - size + 1), offset)) or not size
        for offset, ident in enumerate(log)
        if ident is not None
    ]


@given(
    log=st.lists(st.one_of(st.none(), st.sampled_from("abcdefghij")), min_size=1, max_size=200),
    size=st.integers(0, 12),
)
def test_decisions_follow_the_stated_rule(log: list[str | None], size: int) -> None:
    """Whatever the bulk eviction did before, each decision equals the rule's."""
    assert _decide(log, size, 0) == _naive(log, size)


def test_the_window_grows_with_its_traffic_and_stays_bounded() -> None:
    w = PartitionWindow(100)
    assert w.capacity == MIN_SLOTS  # an idle partition's window holds next to nothing
    for offset in range(10_000):
        assert w.admit(offset, f"id{offset}")
    assert len(w) == 100
    # expired ids make room (in bulk): the table stops at the power of two at or above 4 x 100
    assert w.capacity == 512


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.key, self.timestamp = offset, value, b"u", 0
        self.headers: list[tuple[str, bytes | None]] = []


def test_fold_rejects_resends_and_counts_nothing_twice_after_warm_up() -> None:
    settings = Settings()
    ctx = build_fold_context(settings, Windows(settings.zone))
    now = int(time.time() * 1000)
    views = [event("page_view", "u1", now - 60_000 + i, page="/") for i in range(4)]
    log = [*views, views[1], views[3]]  # two producer resends
    recs = [Rec(i, orjson.dumps(e)) for i, e in enumerate(log)]

    result = fold_records(recs, ctx, -1, now, window=PartitionWindow(100))
    assert result is not None
    assert [(r.offset, r.reason) for r in result.rejected] == [
        (4, Reason.DUPLICATE),
        (5, Reason.DUPLICATE),
    ]
    assert sum(f.get("pv", 0) for f in result.deltas.counters.values()) == 4

    # A new owner: offsets 0..3 were applied before; they only rebuild the window.
    again = fold_records(recs, ctx, -1, now, window=PartitionWindow(100), warm_until=3)
    assert again is not None
    assert again.first_offset == 4 and again.accepted == 0
    assert [r.reason for r in again.rejected] == [Reason.DUPLICATE, Reason.DUPLICATE]
    assert fold_records(recs[:4], ctx, -1, now, window=PartitionWindow(100), warm_until=3) is None
