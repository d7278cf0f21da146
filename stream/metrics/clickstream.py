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

    def handlers(self) -> dict[str, Handler]:
        return {
            EventType.PAGE_VIEW: self.page_view,
            EventType.SCREEN_VIEW: self.page_view,
            EventType.IMPRESSION: self.impression,
            EventType.CLICK: self.click,
            EventType.CONVERSION: self.conversion,
            EventType.FEATURE_USED: self.feature_used,
        }

    def page_view(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.count(minute, "pv")
        page_field = self.page_fields.get(event.props.page)  # type: ignore[arg-type]
        if page_field is not None:
            deltas.count(minute, page_field)

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

    def _ad(self, event: Event, minute: int, deltas: Deltas, *, impression: bool) -> None:
        props = event.props
        imp, clk, orph, c, p = self._fields(props.campaign, props.placement)
        deltas.count(minute, imp if impression else clk)
        key = (self.windows.day_of_minute(minute), event.user_id, c, p)
        deltas.ad_pair(key, orph, impression=impression)

    def impression(self, event: Event, minute: int, deltas: Deltas) -> None:
        self._ad(event, minute, deltas, impression=True)

    def click(self, event: Event, minute: int, deltas: Deltas) -> None:
        self._ad(event, minute, deltas, impression=False)

    def conversion(self, event: Event, minute: int, deltas: Deltas) -> None:
        deltas.count(minute, "conv")

    def feature_used(self, event: Event, minute: int, deltas: Deltas) -> None:
        name = field("feat", escape(event.props.feature or NOT_SET))
        deltas.count(minute, name)
        deltas.add_user(minute, name, event.user_id)
