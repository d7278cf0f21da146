"""Bounded label sets: an event's free-text dimension value → one of a configured few.

Every dimension that becomes a hash field, an API filter value or a Prometheus label must come
from a bounded set, or one noisy producer creates unbounded series. Values outside the configured
set become ``other``; a missing value becomes ``(not set)`` (GA's spelling). The result is
escaped once and cached, because handlers call this per event.
"""

from __future__ import annotations

from collections.abc import Iterable

from stream.engine.keys import escape

__all__ = ["NOT_SET", "OTHER", "BoundedLabels"]

NOT_SET = "(not set)"
OTHER = "other"


class BoundedLabels:
    """Maps raw values to escaped bounded labels (a dict lookup on the hot path)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(allowed)
        self._escaped: dict[str | None, str] = {v: escape(v) for v in self.allowed}
        self._escaped[None] = escape(NOT_SET)
        self._other = escape(OTHER)

    def __call__(self, value: str | None) -> str:
        """The escaped label of ``value`` (ready to be a hash-field part)."""
        return self._escaped.get(value, self._other)
