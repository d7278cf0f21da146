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
from stream.engine.deltas import Deltas, pair_digest
from stream.engine.keys import escape, field
from stream.engine.windows import Windows

Handler = Callable[[Event, int, Deltas], None]

#: Shown for a missing campaign/placement (GA's "(not set)").
NOT_SET = "(not set)"


class ClickstreamFold:
    def __init__(self, windows: Windows, tracked_pages: frozenset[str]) -> None:
        self.windows = windows
        self.page_fields = {page: field("pv", escape(page)) for page in tracked_pages}

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

    def _ad(self, event: Event, minute: int, deltas: Deltas, *, impression: bool) -> None:
        campaign = escape(event.props.campaign or NOT_SET)
        placement = escape(event.props.placement or NOT_SET)
        deltas.count(minute, field("imp" if impression else "clk", campaign, placement))
        deltas.ad_pair(
            self.windows.day_of_minute(minute),
            pair_digest(event.user_id, campaign, placement),
            field("orph", campaign, placement),
            impression=impression,
        )

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
