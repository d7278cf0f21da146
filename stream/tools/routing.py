"""Which topic and key an event file's message is published with.

A light decode of just the routing fields (type, user ids), so replay stays fast; a message that
cannot be routed still goes to the default topic, where the worker rejects it to the DLQ with a
reason — tools never drop input silently. The key is the user the decoder will attribute the
event to (:func:`~stream.contract.identity.message_user_id`, the decoder's own rule), so one
user's events share a partition whichever id fields they carry.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from stream.contract.identity import message_user_id
from stream.contract.types import FAMILY_OF, EventType, Family

__all__ = ["Router"]


class _Routing(msgspec.Struct):
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    userId: str | None = None
    anonymousId: str | None = None


_decoder = msgspec.json.Decoder(_Routing)
#: Segment calls other than ``track`` and the type the decoder makes of them.
_SEGMENT_TYPE = {
    "page": EventType.PAGE_VIEW,
    "screen": EventType.SCREEN_VIEW,
    "identify": EventType.IDENTIFY,
}


class Router:
    """Topic and key per message. Type -> topic is resolved once, into two dicts, because
    routing runs per line of a replayed file (building an ``EventType`` per message was a
    visible share of replay time)."""

    def __init__(
        self,
        family_topics: Mapping[Family, str],
        default_topic: str,
        segment_event_map: Mapping[str, str],
    ) -> None:
        self.default_topic = default_topic
        native = {t.value: family_topics[family] for t, family in FAMILY_OF.items()}
        self._topic_of_track = {
            name: native[value] for name, value in segment_event_map.items() if value in native
        }
        self._topic_of_type = {
            **native,
            **{call: native[t.value] for call, t in _SEGMENT_TYPE.items()},
        }

    def route(self, message: bytes) -> tuple[str, bytes]:
        try:
            r = _decoder.decode(message)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return self.default_topic, b""
        kind = r.type
        if kind == "track":
            topic = self._topic_of_track.get(r.event or "", self.default_topic)
        else:
            topic = self._topic_of_type.get(kind or "", self.default_topic)
        user = message_user_id(kind, r.user_id, r.userId, r.anonymousId) or ""
        return topic, user.encode()
