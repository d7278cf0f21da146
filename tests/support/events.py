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
