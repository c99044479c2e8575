"""The canonical interaction event every source is turned into (table ``events``)."""

from __future__ import annotations

import json
import re
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


# One step of a JSON path that names one value: .key, ."quoted key" or [index].
_PATH_STEP = re.compile(r'\.(?:"((?:[^"\\]|\\.)*)"|([^."\[\]*]+))|\[([0-9]+)\]')


def json_path_steps(column: str) -> tuple[str | int, ...]:
    """A mapping value as the keys and indexes it walks: 'a b' -> ('a b',), '$.a."b c"[0]' -> ('a', 'b c', 0).

    Format chat reads its paths in Python, one conversation at a time, so it takes only the steps that name
    one value; ValueError for anything else (wildcards, negative or computed indexes).
    """
    if not column.startswith("$"):
        return (column,)
    steps: list[str | int] = []
    position = 1
    while position < len(column):
        step = _PATH_STEP.match(column, position)
        if step is None:
            raise ValueError(f"format chat reads paths of .key, .\"key\" and [n] steps only, not {column!r}")
        quoted, plain, index = step.groups()
        steps.append(json.loads(f'"{quoted}"') if quoted is not None else plain if plain is not None else int(index))
        position = step.end()
    return tuple(steps)


def value_at(document: Any, steps: tuple[str | int, ...]) -> Any:
    """The value `steps` (json_path_steps) lead to in a parsed JSON document; None when absent."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return None
        elif not isinstance(document, dict) or step not in document:
            return None
        document = document[step]
    return document
