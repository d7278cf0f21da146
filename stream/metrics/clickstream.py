"""Clickstream metrics: page views, impressions, clicks (with orphans), conversions, feature use.

Fold side: per-event handlers that record facts into a batch's :class:`Deltas` (pure, no I/O).
Field names written here are the contract with the read side (:mod:`stream.metrics.catalog`):

    pv                      page_view + screen_view
    pv|<page>               the same for each tracked page
    imp|<campaign>|<place>  impressions        clk|<campaign>|<place>  clicks
    orph|<campaign>|<place> orphan clicks (day windows only: no impression of that campaign and
                            placement by that user on that local day)
    conv                    conversions        feat|<feature>  feature_used events
    users set ``feat|<feature>``: distinct users of a feature
"""

from __future__ import annotations

from collections.abc import Callable

from stream.contract.decode import Event
from stream.contract.types import EventType
from stream.engine.deltas import Deltas
from stream.engine.keys import escape, field
from stream.engine.windows import Windows

Handler = Callable[[Event, int, Deltas], None]

#: Shown for a missing campaign/placement (GA's "(not set)").
NOT_SET = "(not set)"


class ClickstreamFold:
    def __init__(self, windows: Windows, tracked_pages: frozenset[str]) -> None:
        self.windows = windows
        self.page_fields = {page: field("pv", escape(page)) for page in tracked_pages}
        # (campaign, placement) -> (impression field, click field, orphan field, esc c, esc p)
        self._ad_fields: dict[tuple[str | None, str | None], tuple[str, str, str, str, str]] = {}
        self._feature_fields: dict[str | None, str] = {}  # feature -> escaped counter field

    def handlers(self) -> dict[str, Handler]:
        return {
            EventType.PAGE_VIEW: self.page_view,
            EventType.SCREEN_VIEW: self.page_view,
            EventType.IMPRESSION: self.impression,
            EventType.CLICK: self.click,
            EventType.CONVERSION: self.conversion,
            EventType.FEATURE_USED: self.feature_used,
        }

    # The handlers run once per event: dict work inlined, no helper calls (Deltas.count and
    # an ad pair's entry spelled out).

    def page_view(self, event: Event, minute: int, deltas: Deltas) -> None:
        counters = deltas.counters
        bucket = counters.get(minute)
        if bucket is None:
            bucket = counters[minute] = {}
        bucket["pv"] = bucket.get("pv", 0) + 1
        page_field = self.page_fields.get(event.props.page)  # type: ignore[arg-type]
        if page_field is not None:
            bucket[page_field] = bucket.get(page_field, 0) + 1

    def _fields(
        self, campaign: str | None, placement: str | None
    ) -> tuple[str, str, str, str, str]:
        cached = self._ad_fields.get((campaign, placement))
        if cached is None:
            c, p = escape(campaign or NOT_SET), escape(placement or NOT_SET)
            cached = (field("imp", c, p), field("clk", c, p), field("orph", c, p), c, p)
            if len(self._ad_fields) > 100_000:
                self._ad_fields.clear()
            self._ad_fields[(campaign, placement)] = cached
        return cached

    def _ad(self, event: Event, minute: int, deltas: Deltas, which: int) -> None:
        """``which``: 0 impression, 1 click (the index into the pair's counts too)."""
        props = event.props
        fields = self._ad_fields.get((props.campaign, props.placement))
        if fields is None:
            fields = self._fields(props.campaign, props.placement)
        name = fields[which]
        counters = deltas.counters
        bucket = counters.get(minute)
        if bucket is None:
            bucket = counters[minute] = {}
        bucket[name] = bucket.get(name, 0) + 1
        key = (self.windows.day_of_minute(minute), event.user_id, fields[3], fields[4])
        pairs = deltas.orphan_pairs
        entry = pairs.get(key)
        if entry is None:
            entry = pairs[key] = [0, 0, fields[2]]
        entry[which] += 1  # type: ignore[operator]

    def impression(self, event: Event, minute: int, deltas: Deltas) -> None:
        self._ad(event, minute, deltas, 0)

    def click(self, event: Event, minute: int, deltas: Deltas) -> None:
        self._ad(event, minute, deltas, 1)

    def conversion(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.count(minute, "conv")

    def feature_used(self, event: Event, minute: int, deltas: Deltas) -> None:
        feature = event.props.feature
        name = self._feature_fields.get(feature)
        if name is None:
            if len(self._feature_fields) > 10_000:
                self._feature_fields.clear()
            name = self._feature_fields[feature] = field("feat", escape(feature or NOT_SET))
        deltas.count(minute, name)
        deltas.add_user(minute, name, event.user_id)
