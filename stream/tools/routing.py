"""Which topic and key an event file's message is published with.

A light decode of just the routing fields (type, user id), so replay stays fast; a message that
cannot be routed still goes to the default topic, where the worker rejects it to the DLQ with a
reason — tools never drop input silently.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from stream.contract.types import FAMILY_OF, EventType, Family


class _Routing(msgspec.Struct):
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    userId: str | None = None
    anonymousId: str | None = None


_decoder = msgspec.json.Decoder(_Routing)
_SEGMENT_CLICK = {
    "page": EventType.PAGE_VIEW,
    "screen": EventType.SCREEN_VIEW,
    "identify": EventType.IDENTIFY,
}


class Router:
    def __init__(
        self,
        family_topics: Mapping[Family, str],
        default_topic: str,
        segment_event_map: Mapping[str, str],
    ) -> None:
        self.family_topics = dict(family_topics)
        self.default_topic = default_topic
        self.segment_event_map = dict(segment_event_map)

    def route(self, message: bytes) -> tuple[str, bytes]:
        try:
            r = _decoder.decode(message)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return self.default_topic, b""
        event_type: str | None = r.type
        if r.type == "track":
            event_type = self.segment_event_map.get(r.event or "")
        elif r.type in _SEGMENT_CLICK:
            event_type = _SEGMENT_CLICK[r.type]
        user = r.user_id or r.userId or r.anonymousId or ""
        try:
            family = FAMILY_OF[EventType(event_type)] if event_type else None
        except ValueError:
            family = None
        topic = self.family_topics[family] if family is not None else self.default_topic
        return topic, user.encode()
