"""What the customer score keeps of one event until its batch settles: a touch.

A batch's score items live until the batch is applied. Holding the decoded events themselves kept
some ten objects per event alive for that long (the event, its properties and their strings);
freed together at the end, cold, and never reused by the next events' decoding, they cost
~0.3 µs per event more than a touch of the fields the score reads, whose event is freed at once
(``stream engine-profile``; see docs/architecture.md, "Why batches").

A touch is also what a relaying family hands to the home topic
(:mod:`stream.engine.relay`): :meth:`ScoreTouch.relay_message` is a native-envelope message with
those fields, which the home partition decodes and touches again.
"""

from __future__ import annotations

import msgspec
import orjson

__all__ = ["ScoreTouch"]


class ScoreTouch(msgspec.Struct, gc=False):
    """One event as the customer score reads it (the names are the event's own)."""

    event_id: str
    type: str
    ts_ms: int
    user_id: str
    channel: str | None  # acquisition channel as sent (labelled where it is counted)
    ticket_id: str | None
    score: int | None  # survey answer
    author: str | None  # ticket events: agent, requester, bot
    public: bool | None  # ticket_replied: False for a private note

    def relay_message(self) -> str:
        """The touch as a native-envelope event (the relayed record's value)."""
        props = {
            name: value
            for name, value in (
                ("channel", self.channel),
                ("ticket_id", self.ticket_id),
                ("score", self.score),
                ("author", self.author),
                ("public", self.public),
            )
            if value is not None
        }
        msg: dict[str, object] = {
            "event_id": self.event_id,
            "type": self.type,
            "ts": self.ts_ms,
            "user_id": self.user_id,
        }
        if props:
            msg["properties"] = props
        return orjson.dumps(msg).decode()
