"""The vocabulary of event contract v1: event types, families and rejection reasons.

Plain enums only, so that settings, the decoder, the simulator and the batch reference in the
tests can all share them without importing anything heavy.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAMILY_OF", "REPLY_AUTHORS", "SCORE_RANGE", "EventType", "Family", "Reason"]


class Family(StrEnum):
    """An event family; each has its own input topic (names are configurable)."""

    CLICKSTREAM = "clickstream"
    SOCIAL = "social"
    SUPPORT = "support"
    FEEDBACK = "feedback"
    ACCOUNT = "account"


class EventType(StrEnum):
    # clickstream
    PAGE_VIEW = "page_view"
    SCREEN_VIEW = "screen_view"
    IMPRESSION = "impression"
    CLICK = "click"
    CONVERSION = "conversion"
    FEATURE_USED = "feature_used"
    # social
    POST_IMPRESSION = "post_impression"
    LIKE = "like"
    COMMENT = "comment"
    SHARE = "share"
    SAVE = "save"
    MENTION = "mention"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    # support
    TICKET_CREATED = "ticket_created"
    TICKET_REPLIED = "ticket_replied"
    TICKET_SOLVED = "ticket_solved"
    TICKET_REOPENED = "ticket_reopened"
    TICKET_CLOSED = "ticket_closed"
    # feedback
    NPS_RESPONSE = "nps_response"
    CSAT_RESPONSE = "csat_response"
    CES_RESPONSE = "ces_response"
    # account lifecycle
    SUBSCRIPTION_STARTED = "subscription_started"
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    SUBSCRIPTION_UPGRADED = "subscription_upgraded"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    PURCHASE = "purchase"
    EMAIL_OPENED = "email_opened"
    # profile: a Segment `identify` call (traits such as plan / acquisition channel)
    IDENTIFY = "identify"


FAMILY_OF: dict[EventType, Family] = {}
for _t in (
    EventType.PAGE_VIEW,
    EventType.SCREEN_VIEW,
    EventType.IMPRESSION,
    EventType.CLICK,
    EventType.CONVERSION,
    EventType.FEATURE_USED,
):
    FAMILY_OF[_t] = Family.CLICKSTREAM
for _t in (
    EventType.POST_IMPRESSION,
    EventType.LIKE,
    EventType.COMMENT,
    EventType.SHARE,
    EventType.SAVE,
    EventType.MENTION,
    EventType.FOLLOW,
    EventType.UNFOLLOW,
):
    FAMILY_OF[_t] = Family.SOCIAL
for _t in (
    EventType.TICKET_CREATED,
    EventType.TICKET_REPLIED,
    EventType.TICKET_SOLVED,
    EventType.TICKET_REOPENED,
    EventType.TICKET_CLOSED,
):
    FAMILY_OF[_t] = Family.SUPPORT
for _t in (EventType.NPS_RESPONSE, EventType.CSAT_RESPONSE, EventType.CES_RESPONSE):
    FAMILY_OF[_t] = Family.FEEDBACK
for _t in (
    EventType.SUBSCRIPTION_STARTED,
    EventType.SUBSCRIPTION_RENEWED,
    EventType.SUBSCRIPTION_UPGRADED,
    EventType.SUBSCRIPTION_CANCELLED,
    EventType.PURCHASE,
    EventType.EMAIL_OPENED,
    EventType.IDENTIFY,
):
    FAMILY_OF[_t] = Family.ACCOUNT
del _t

#: Inclusive score ranges of the survey answers.
SCORE_RANGE: dict[EventType, tuple[int, int]] = {
    EventType.NPS_RESPONSE: (0, 10),
    EventType.CSAT_RESPONSE: (1, 5),
    EventType.CES_RESPONSE: (1, 7),
}

#: Who wrote a ticket reply. Only public agent replies count toward first reply time.
REPLY_AUTHORS: frozenset[str] = frozenset({"agent", "requester", "bot"})


class Reason(StrEnum):
    """Why a message went to the dead-letter topic. A bounded set: it is a Prometheus label."""

    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    SCHEMA = "schema"  # valid JSON, wrong shape or field types
    MISSING_EVENT_ID = "missing_event_id"
    MISSING_USER_ID = "missing_user_id"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    OUT_OF_RANGE = "out_of_range"
    LATE = "late"
    DUPLICATE = "duplicate"  # event_id already seen among the partition's recent events
