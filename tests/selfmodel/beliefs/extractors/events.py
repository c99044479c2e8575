"""Tiny event builders and a findings view shared by the extractor tests."""

from __future__ import annotations

from selfmodel.beliefs.extractors.base import EventView, Finding, TargetView


def message(text: str | None, tags: tuple[str, ...] = (), user_id: str = "u1", **attributes) -> EventView:
    return EventView(event_id="e1", user_id=user_id, kind="message", text=text, tags=tags, attributes=attributes)


def response(text: str) -> EventView:
    return EventView(event_id="e2", user_id="u1", kind="response", text=text)


def feedback(target: TargetView | None, rating: float | None, user_id: str = "u1", **attributes) -> EventView:
    return EventView(event_id="e3", user_id=user_id, kind="feedback", text=None, rating=rating,
                     attributes=attributes, target=target)


def found(findings: list[Finding]) -> list[tuple]:
    """(key, value, weight, user_id) of each finding, in a stable order, weights rounded."""
    return sorted((f.key, f.value, round(f.weight, 6), f.user_id) for f in findings)
