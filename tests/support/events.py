"""Small hand-made events for focused tests (the simulator makes the big realistic streams)."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count()


def event(type_: str, user: str, ts: int, **props: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": f"e{next(_ids)}",
        "type": type_,
        "ts": ts,
        "user_id": user,
        "properties": props,
    }
    if type_ in ("page_view", "screen_view", "impression", "click", "conversion", "feature_used"):
        e["session_id"] = f"s-{user}"
    return e


def clickstream_mix(n: int, t0: int, users: int = 17) -> list[dict[str, Any]]:
    """`n` events 1.5 s apart cycling through five types, for exactly-once style tests."""
    out = []
    for i in range(n):
        kind = ("page_view", "impression", "click", "feature_used", "like")[i % 5]
        out.append(
            event(
                kind,
                f"u{i % users}",
                t0 + i * 1500,
                page="/pricing",
                campaign="c1",
                placement="top",
                feature="export",
                post_id="p",
            )
        )
    return out
