"""The canonical interaction event every source is turned into (table ``events``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# What a user said, what the product answered, and what the user thought of an answer.
DEFAULT_KINDS = ("message", "response", "feedback")

# Fields a source record can provide (directly, through `mapping`, or through `defaults`).
CANONICAL_FIELDS = (
    "event_id",
    "user_id",
    "occurred_at",
    "kind",
    "text",
    "session_id",
    "reply_to",
    "rating",
    "tags",
    "attributes",
)


class Event(BaseModel):
    """One interaction as stored in ``events``.

    ``event_id`` is unique within its ``source``; ``user_id`` is global, so the same person can be
    fed by several sources. ``is_late`` marks events older than what the source had already loaded
    when they arrived, so a belief refresh knows it must look back.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    occurred_at: datetime
    kind: str
    text: str | None = None
    session_id: str | None = None
    reply_to: str | None = None
    rating: float | None = None
    tags: list[str] = Field(default_factory=list)
    source: str
    batch_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    content_hash: str
    is_late: bool = False
    ingested_at: datetime


def json_path(column: str) -> str:
    """A mapping value as a JSON path: '$.a.b' is used as written, anything else names one key."""
    if column.startswith("$"):
        return column
    return '$."' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'
