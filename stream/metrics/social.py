"""Social metrics: actions per platform and window, engagement rate, followers. Fold side, pure.

Counter fields ``soc.<action>|<platform>`` (platform from a bounded set), actions ``imp`` (post
impressions), ``like``, ``comment``, ``share``, ``save``, ``mention``, ``follow``, ``unfollow``.

Followers are a level, not a window sum: the follower count at time t is the number of ``follow``
minus ``unfollow`` events stamped before t (events since the stream began; a deployment that
needs an absolute figure replays or seeds history). Each follow/unfollow also moves the running
total ``followers`` (field per platform, never expires), so the read side gets the level at any
window start as total − the follows/unfollows since (see :mod:`stream.metrics.levels`): exact
under any arrival order, because both are plain sums.
"""

from __future__ import annotations

from collections.abc import Callable

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas
from stream.engine.keys import field
from stream.metrics.labels import BoundedLabels

Handler = Callable[[Event, int, Deltas], None]
DIMENSIONS = ("platform",)
FOLLOWERS = "followers"
#: Event type -> action name in counter fields.
ACTIONS: dict[str, str] = {
    EventType.POST_IMPRESSION.value: "imp",
    EventType.LIKE.value: "like",
    EventType.COMMENT.value: "comment",
    EventType.SHARE.value: "share",
    EventType.SAVE.value: "save",
    EventType.MENTION.value: "mention",
    EventType.FOLLOW.value: "follow",
    EventType.UNFOLLOW.value: "unfollow",
}
ACTION_NAMES = tuple(ACTIONS.values())
#: Interactions in the engagement rate's numerator.
ENGAGEMENTS = ("like", "comment", "share", "save")
_FOLLOW_DELTA = {EventType.FOLLOW.value: 1, EventType.UNFOLLOW.value: -1}


def growth(start: float, end: float) -> float | None:
    """(end − start) / start × 100; null when there is no (positive) start to grow from."""
    if start <= 0:
        return None
    return (end - start) / start * 100


class SocialFold:
    def __init__(self, platforms: BoundedLabels) -> None:
        self.platforms = platforms

    def handlers(self) -> dict[str, Handler]:
        return {t: self.action for t in ACTIONS}

    def action(self, event: Event, minute: int, deltas: Deltas) -> None:
        platform = self.platforms(event.props.platform)
        deltas.count(minute, field("soc." + ACTIONS[event.type], platform))
        step = _FOLLOW_DELTA.get(event.type)
        if step is not None:
            deltas.total(FOLLOWERS, platform, step)
