"""What extractors see (an event, and for feedback the event it rates) and what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TargetView:
    """The event a feedback rates (reply_to), as far as an extractor needs it."""

    user_id: str
    kind: str
    text: str | None
    tags: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventView:
    event_id: str
    user_id: str
    kind: str
    text: str | None
    tags: tuple[str, ...] = ()
    rating: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    target: TargetView | None = None


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: key = value, with a weight. user_id None means the event's own user;
    feedback received is evidence about the rated event's author instead. `kind` names the kind of
    evidence (a tag, a self-declaration, an upvote...) whose weight a calibration fits; empty: the event's kind."""

    key: str
    value: str
    weight: float
    user_id: str | None = None
    kind: str = ""


def is_authored_message(event: EventView) -> bool:
    """A message the user wrote themselves (not a response, a vote, or a slash command)."""
    return event.kind == "message" and bool(event.text)
