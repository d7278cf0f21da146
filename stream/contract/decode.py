"""Bytes -> validated :class:`Event`, or a :class:`Rejection` with a reason code.

This is the hot path's first step. Our own envelope, the common case, is one msgspec decode
straight into the :class:`Event` (:data:`NativeMessage`) and a few cheap checks; anything else
(Segment/RudderStack spec messages, other timestamp forms, bad input) takes the full path, one
decode into a permissive struct that covers both shapes, which decides alike and says why it
rejects. It never raises on bad input: every failure becomes a Rejection, because a worker must
never crash on (or silently drop) a message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from stream.contract.identity import SEGMENT_CALLS as _SEGMENT_CALLS
from stream.contract.identity import message_user_id
from stream.contract.types import REPLY_AUTHORS, SCORE_RANGE, EventType, Reason

__all__ = ["MAX_ID_CHARS", "Decoder", "Event", "Name", "Properties", "Rejection"]

#: Bounds on identifiers: they end up in Redis keys and hash fields, so keep them sane.
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 200

Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
Timestamp = int | float | datetime


class Properties(msgspec.Struct, gc=False):
    """The event properties this product reads. Unknown keys are accepted and ignored."""

    # clickstream
    page: Name | None = None
    path: Name | None = None  # Segment page calls carry the path here
    platform: Name | None = None
    channel: Name | None = None  # acquisition channel (utm_medium-like)
    campaign: Name | None = None
    placement: Name | None = None
    feature: Name | None = None
    # social
    post_id: Id | None = None
    # support
    ticket_id: Id | None = None
    author: Name | None = None  # agent | requester | bot (ticket_replied)
    public: bool | None = None
    priority: Name | None = None
    # feedback
    score: int | None = None
    touchpoint: Name | None = None
    # account
    plan: Name | None = None
    amount: float | None = None
    currency: Name | None = None


class RawMessage(msgspec.Struct, gc=False):
    """Union of our envelope and the Segment spec; normalised by :func:`_normalise`."""

    type: Name | None = None
    event_id: Id | None = None
    ts: Timestamp | None = None
    user_id: Id | None = None
    session_id: Id | None = None
    account_id: Id | None = None
    properties: Properties | None = None
    # Segment / RudderStack spec fields
    messageId: Id | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    timestamp: Timestamp | None = None
    event: Name | None = None
    name: Name | None = None


class Event(msgspec.Struct, gc=False):
    """A validated event in the product's own shape; ``ts_ms`` is epoch milliseconds (UTC)."""

    event_id: str
    type: str
    ts_ms: int
    user_id: str
    session_id: str | None
    account_id: str | None
    props: Properties


_NATIVE_TYPES: frozenset[str] = frozenset(t.value for t in EventType if t != EventType.IDENTIFY)
if TYPE_CHECKING:
    NativeType = str
else:
    # A literal: msgspec hands out the one interned string of each type (no new string, its
    # hash kept), and a Segment call (`track`, `page`, ...) fails as soon as its type is read.
    NativeType = Literal[tuple(sorted(_NATIVE_TYPES))]


class NativeEnvelope(Event, gc=False):
    """Our own envelope, decoded straight into an :class:`Event` (the hot path's one struct).

    Its fields accept a subset of what :class:`RawMessage`'s do (an integer ``ts``, no null
    ``properties``, a native type), so whatever this decodes, the full path would have decoded to
    the same values; anything else fails here and takes the full path. :data:`NativeMessage` is
    this plus the Segment spec's own fields, checked as the full path checks them (and then
    ignored), so that both paths accept and reject the same messages.
    """

    event_id: Id
    type: NativeType
    ts_ms: int = msgspec.field(name="ts")
    user_id: Id
    session_id: Id | None = None
    account_id: Id | None = None
    props: Properties = msgspec.field(default_factory=Properties, name="properties")


#: :class:`RawMessage`'s Segment / RudderStack spec fields, which our envelope does not use.
SEGMENT_ONLY_FIELDS = ("messageId", "userId", "anonymousId", "timestamp", "event", "name")
#: What the fast path decodes: :class:`NativeEnvelope` and RawMessage's own declarations of the
#: Segment-only fields (one source for their types and bounds).
NativeMessage = msgspec.defstruct(
    "NativeMessage",
    [
        (f.name, f.type, f.default)
        for f in msgspec.structs.fields(RawMessage)
        if f.name in SEGMENT_ONLY_FIELDS
    ],
    bases=(NativeEnvelope,),
    module=__name__,
    gc=False,
)


class Rejection(msgspec.Struct, gc=False):
    reason: Reason
    detail: str


_EMPTY_PROPS = Properties()
_decoder = msgspec.json.Decoder(RawMessage)
_native_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(NativeMessage)
# The field a validation error points at decides the reason code.
_PATH_REASON: tuple[tuple[str, Reason], ...] = (
    ("`$.ts`", Reason.BAD_TIMESTAMP),
    ("`$.timestamp`", Reason.BAD_TIMESTAMP),
    ("Number out of range", Reason.OUT_OF_RANGE),
)


class Decoder:
    """Validates messages against contract v1 (plus the Segment spec) for one deployment."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        max_future_skew_ms: int,
        segment_event_map: Mapping[str, str],
        csat_min: int = 1,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_future_skew_ms = max_future_skew_ms
        self.segment_event_map = dict(segment_event_map)
        # ``csat_scale``: CSAT answers are 1–5, or 0–5 where a survey tool offers a 0
        self._checks = {**_CHECKS, EventType.CSAT_RESPONSE.value: _score_check(csat_min, 5)}
        #: Messages in a row that the fast path passed on to the full path. A stream of
        #: Segment messages (or of ISO timestamps) would pay for a failed fast decode each:
        #: after _FAST_MISSES_TO_SKIP of them, only every _FAST_PROBE_EVERY-th message tries
        #: the fast path, and one that it takes turns it back on. Either path decides alike.
        self._fast_misses = 0

    def decode(self, data: bytes, now_ms: int) -> Event | Rejection:
        if len(data) > self.max_message_bytes:
            return Rejection(Reason.OVERSIZED, f"{len(data)} bytes > {self.max_message_bytes}")
        misses = self._fast_misses
        if misses >= _FAST_MISSES_TO_SKIP and misses % _FAST_PROBE_EVERY:
            self._fast_misses = misses + 1
            return self._decode_raw(data, now_ms)
        try:
            event = _native_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            # (msgspec.ValidationError is a DecodeError.) Not our envelope with an integer
            # ts, or bad input: the full path decides, and says why.
            self._fast_misses = misses + 1
            return self._decode_raw(data, now_ms)
        # The fast path: the common case, one decode and no second struct. Only the checks
        # the struct's types cannot make remain; a failed one takes the full path, which
        # gives the reason.
        kind = event.type
        ts = event.ts_ms
        if not event.event_id or not event.user_id or not _MIN_TS_MS <= ts <= _MAX_TS_MS:
            self._fast_misses = misses + 1
            return self._decode_raw(data, now_ms)
        self._fast_misses = 0
        if ts > now_ms + self.max_future_skew_ms:
            return Rejection(Reason.FUTURE_TIMESTAMP, f"ts {ts} is ahead of now {now_ms}")
        check = self._checks.get(kind)
        if check is not None:
            problem = check(kind, event.props)
            if problem is not None:
                return problem
        return event

    def _decode_raw(self, data: bytes, now_ms: int) -> Event | Rejection:
        """The full path: every shape the contract accepts, and the reason for what it rejects."""
        try:
            raw = _decoder.decode(data)
        except msgspec.ValidationError as exc:
            # The typed decoder judges types while it parses: `7 garbage` fails on the 7 (an
            # int, not an object) before the garbage. Bad input is rare: parse it again untyped
            # to tell a JSON document of the wrong shape from bytes that are no JSON at all.
            try:
                msgspec.json.decode(data)
            except (msgspec.DecodeError, UnicodeDecodeError) as not_json:
                if "Number out of range" not in str(not_json):  # 1e400 is JSON, too big
                    return Rejection(Reason.NOT_JSON, str(not_json))
            except RecursionError:
                return Rejection(Reason.SCHEMA, "nesting too deep")
            text = str(exc)
            for needle, reason in _PATH_REASON:
                if needle in text:
                    return Rejection(reason, text)
            return Rejection(Reason.SCHEMA, text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return Rejection(Reason.NOT_JSON, str(exc))
        except RecursionError:
            # msgspec recurses into unknown nested values too: ~1000 levels of [[[…]]] fit in a
            # few KB, well under max_message_bytes, and would otherwise escape as an exception.
            return Rejection(Reason.SCHEMA, "nesting too deep")
        kind = raw.type
        if kind in _NATIVE_TYPES:
            # Our own envelope that the fast path in decode() did not take: a float or ISO ts,
            # null properties, or something to reject. The user is `user_id`, as
            # message_user_id() says for native types (without the call).
            event_id, user_id, ts = raw.event_id, raw.user_id, raw.ts
            if not event_id:
                return Rejection(Reason.MISSING_EVENT_ID, "missing event_id")
            if not user_id:
                return Rejection(Reason.MISSING_USER_ID, "missing user_id")
            ts_ms = ts if type(ts) is int and _MIN_TS_MS <= ts <= _MAX_TS_MS else _epoch_ms(ts)
            if ts_ms is None:
                return Rejection(Reason.BAD_TIMESTAMP, "missing, naive or out-of-range timestamp")
            if ts_ms > now_ms + self.max_future_skew_ms:
                return Rejection(Reason.FUTURE_TIMESTAMP, f"ts {ts_ms} is ahead of now {now_ms}")
            props = raw.properties or _EMPTY_PROPS
            check = self._checks.get(kind)
            if check is not None:
                problem = check(kind, props)
                if problem is not None:
                    return problem
            return Event(event_id, kind, ts_ms, user_id, raw.session_id, raw.account_id, props)
        return self._normalise(raw, now_ms)

    def _normalise(self, raw: RawMessage, now_ms: int) -> Event | Rejection:
        """The slower path: Segment/RudderStack spec messages and malformed envelopes."""
        kind = raw.type
        if kind in _SEGMENT_CALLS:
            mapped = self._segment_type(kind, raw.event)
            if mapped is None:
                return Rejection(Reason.UNKNOWN_TYPE, f"unmapped track event {raw.event!r}")
            event_type = mapped
            event_id = raw.messageId or raw.event_id
            user_id = message_user_id(kind, raw.user_id, raw.userId, raw.anonymousId)
            ts = raw.timestamp if raw.timestamp is not None else raw.ts
        elif kind is None:
            return Rejection(Reason.SCHEMA, "missing `type`")
        else:
            return Rejection(Reason.UNKNOWN_TYPE, f"unknown type {kind[:64]!r}")

        if not event_id:
            return Rejection(Reason.MISSING_EVENT_ID, "missing event_id / messageId")
        if not user_id:
            return Rejection(Reason.MISSING_USER_ID, "missing user_id / userId / anonymousId")
        ts_ms = _epoch_ms(ts)
        if ts_ms is None:
            return Rejection(Reason.BAD_TIMESTAMP, "missing, naive or out-of-range timestamp")
        if ts_ms > now_ms + self.max_future_skew_ms:
            return Rejection(Reason.FUTURE_TIMESTAMP, f"ts {ts_ms} is ahead of now {now_ms}")

        props = raw.properties or _EMPTY_PROPS
        check = self._checks.get(event_type)
        if check is not None:
            problem = check(event_type, props)
            if problem is not None:
                return problem
        if kind == "page" and props.page is None and (props.path or raw.name):
            props = msgspec.structs.replace(props, page=props.path or raw.name)
        elif kind == "screen" and props.page is None and raw.name:
            props = msgspec.structs.replace(props, page=raw.name)
        return Event(event_id, event_type, ts_ms, user_id, raw.session_id, raw.account_id, props)

    def _segment_type(self, call: str, event_name: str | None) -> str | None:
        if call == "page":
            return EventType.PAGE_VIEW.value
        if call == "screen":
            return EventType.SCREEN_VIEW.value
        if call == "identify":
            return EventType.IDENTIFY.value
        if event_name is None:
            return None
        return self.segment_event_map.get(event_name)


_FAST_MISSES_TO_SKIP = 16
_FAST_PROBE_EVERY = 64

# Timestamps before 2000 or after 2200 are not events, they are bugs (seconds sent as ms, …).
_MIN_TS_MS = 946_684_800_000
_MAX_TS_MS = 7_258_118_400_000


def _epoch_ms(ts: Timestamp | None) -> int | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            return None
        value = int(ts.timestamp() * 1000)
    elif isinstance(ts, float):
        if not math.isfinite(ts):
            return None
        value = int(ts)
    else:
        value = ts
    if not _MIN_TS_MS <= value <= _MAX_TS_MS:
        return None
    return value


def _score_check(low: int, high: int) -> Callable[[str, Properties], Rejection | None]:
    """A survey answer's check: ``score`` present and within ``low..high``."""

    def check(event_type: str, props: Properties) -> Rejection | None:
        if props.score is None:
            return Rejection(Reason.SCHEMA, f"{event_type} needs properties.score")
        if not low <= props.score <= high:
            return Rejection(Reason.OUT_OF_RANGE, f"score {props.score} not in {low}..{high}")
        return None

    return check


def _check_amount(event_type: str, props: Properties) -> Rejection | None:
    if props.amount is not None and (not math.isfinite(props.amount) or props.amount < 0):
        return Rejection(Reason.OUT_OF_RANGE, "amount must be a finite number >= 0")
    return None


def _check_ticket(event_type: str, props: Properties) -> Rejection | None:
    if not props.ticket_id:
        return Rejection(Reason.SCHEMA, f"{event_type} needs properties.ticket_id")
    if event_type == EventType.TICKET_REPLIED and props.author not in REPLY_AUTHORS:
        return Rejection(
            Reason.SCHEMA, "ticket_replied needs properties.author agent|requester|bot"
        )
    return None


#: Per-type property checks; types without an entry need none (the hot path skips them).
_CHECKS: dict[str, Callable[[str, Properties], Rejection | None]] = {
    **{t.value: _score_check(*SCORE_RANGE[t]) for t in SCORE_RANGE},
    **{
        t.value: _check_amount
        for t in (
            EventType.PURCHASE,
            EventType.CONVERSION,
            EventType.SUBSCRIPTION_STARTED,
            EventType.SUBSCRIPTION_RENEWED,
            EventType.SUBSCRIPTION_UPGRADED,
        )
    },
    **{t.value: _check_ticket for t in EventType if t.value.startswith("ticket_")},
}
