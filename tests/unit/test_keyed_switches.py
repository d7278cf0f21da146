"""Sessions and customer scores can be switched off; the engine then carries neither."""

from __future__ import annotations

import pytest

from stream.config.settings import Settings
from stream.config.wiring import (
    build_fold_context,
    build_keyed_states,
    metric_options,
    relay_config,
)
from stream.contract.types import EventType
from stream.engine.fold import FoldContext
from stream.engine.windows import Windows
from stream.metrics.catalog import CATALOG
from stream.metrics.reader import QueryError
from stream.metrics.spec import Query, evaluate


def _settings(sessions: bool, score: bool) -> Settings:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    return s.with_per_user_states(sessions=sessions, score=score)


def _owners(ctx: FoldContext, event_type: str) -> set[str]:
    """Class names of the fold handlers of an event type (they are bound methods)."""
    return {h.__self__.__class__.__name__ for h in ctx.handlers[event_type]}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("sessions", "score"), [(True, True), (False, True), (True, False)])
def test_each_switch_removes_its_state_its_handlers_and_for_scores_the_relay(
    sessions: bool, score: bool
) -> None:
    s = _settings(sessions, score)
    names = {k.name for k in build_keyed_states(s)}
    assert ("ses" in names) is sessions
    assert ("cus" in names) is score
    assert {"tix", "cust"} <= names  # the families' own states (tickets, subscriptions) stay
    ctx = build_fold_context(s, Windows(s.zone))
    owners = _owners(ctx, EventType.PAGE_VIEW.value)
    assert ("SessionState" in owners) is sessions
    assert ("ScoreState" in owners) is score
    assert (relay_config(s) is not None) is score
    assert bool(ctx.relay_handlers) is score


def test_both_off_leaves_the_clickstream_counters_only() -> None:
    s = _settings(False, False)
    ctx = build_fold_context(s, Windows(s.zone))
    assert _owners(ctx, EventType.PAGE_VIEW.value) == {"ClickstreamFold"}


async def test_a_session_metric_is_a_query_error_while_sessions_are_off() -> None:
    s = _settings(False, True)
    query = Query("hour", [0], {}, Windows(s.zone), metric_options(s))
    with pytest.raises(QueryError, match="sessions_enabled"):
        await evaluate(CATALOG["bounce_rate"], query, None)  # type: ignore[arg-type]
