"""The interface to a language model: what the extractor and the judge ask of it, whatever serves it.

Errors never quote the API key, the request or the model's output (which may repeat what was sent): they
say what failed (`kind`) and where (the endpoint's host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)

# rate_limited, server_error, timeout, unavailable (no connection): worth trying again later;
# malformed (output not of the schema), refused (the model declined, or the reply was cut off by its length),
# rejected (the request was refused: 4xx other than 429), auth (401/403): the same request would fail again.
ErrorKind = Literal["rate_limited", "server_error", "timeout", "unavailable", "malformed", "refused", "rejected",
                    "auth"]
TRANSIENT: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout", "unavailable"})

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Usage:
    """Tokens a request consumed (as the endpoint reports them)."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A structured reply: the parsed object and what it cost."""

    value: T
    usage: Usage


@dataclass(frozen=True)
class Completion:
    """A plain-text reply and what it cost."""

    text: str
    usage: Usage


class LLMError(Exception):
    """A request that did not give a usable reply, after the client's retries. `usage` is what it still cost
    (a malformed reply was paid for)."""

    def __init__(self, kind: ErrorKind, message: str, usage: Usage = Usage()) -> None:
        super().__init__(message)
        self.kind = kind
        self.usage = usage

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT


class MalformedOutput(LLMError):
    """The reply was not an object of the schema (invalid JSON, missing or mistyped fields)."""

    def __init__(self, message: str, usage: Usage = Usage()) -> None:
        super().__init__("malformed", message, usage)


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: `custom_id` names it in the results."""

    custom_id: str
    messages: list[Message]
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class BatchState:
    batch_id: str
    # validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled
    status: str

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


class ChatModel(Protocol):
    """A chat model: one structured call, one plain-text call. Implementations retry transient failures
    themselves and raise LLMError when a request still fails."""

    model: str

    def parse(self, messages: list[Message], schema: type[T], *, max_output_tokens: int | None = None) -> Parsed[T]:
        """The reply as an instance of `schema` (structured outputs: a JSON schema the endpoint must follow)."""
        ...

    def complete(self, messages: list[Message], *, max_output_tokens: int | None = None,
                 temperature: float | None = None) -> Completion:
        """The reply as text (for a judge, or a model without structured outputs)."""
        ...


class BatchChatModel(ChatModel, Protocol):
    """A chat model with a Batch API: requests uploaded as one file, answered within a window, at a discount."""

    def submit_batch(self, requests: list[BatchRequest], schema: type[BaseModel]) -> str:
        """Upload the requests (each asking for `schema`) and start a batch; its id."""
        ...

    def batch_state(self, batch_id: str) -> BatchState:
        ...

    def batch_results(self, batch_id: str, schema: type[T]) -> dict[str, Parsed[T] | LLMError]:
        """Per custom_id, the parsed reply or why there is none (a finished batch only)."""
        ...
