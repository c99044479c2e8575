"""ChatModel over the `openai` client: any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, llama.cpp,
Ollama). The only module that imports `openai`.

Retries are the client's own: a rate limit (429), a server error (5xx), a timeout or a dropped connection is
tried again up to `max_retries` times with exponential backoff (0.5 s doubling to 8 s, with jitter), honouring
the server's Retry-After. What still fails becomes an LLMError whose message names the endpoint's host and the
kind of failure, never the key, the request or the reply.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic
from openai.lib._parsing._completions import type_to_response_format_param

from selfmodel.llm.base import (
    BatchRequest, BatchState, Completion, LLMError, MalformedOutput, Message, Parsed, T, Usage,
)
from selfmodel.redact import redact_http_client_logs, redact_url

# Sent as the key to an endpoint configured without one (a local server): the client refuses an empty key.
NO_KEY = "no-key"
BATCH_ENDPOINT = "/v1/chat/completions"


# More tokens than any one request can use: a count beyond it is not a count (and would not fit the tables).
MAX_REPORTED_TOKENS = 10**9


def _token_count(value: Any) -> int:
    """A reported token count; 0 (as when absent) for anything that is not one: a string, a negative or
    fractional number, an absurd one. An endpoint's garbage must neither crash a run nor cost it millions."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPORTED_TOKENS:
        return 0
    return value


def _usage(usage: Any) -> Usage:
    """Usage from a reply's `usage` (an object or a dict; absent: nothing reported)."""
    if usage is None:
        return Usage()
    get = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)
    return Usage(_token_count(get("prompt_tokens")), _token_count(get("completion_tokens")))


# What the openai client raises reading a 200 reply that is JSON but no chat completion ({}, [], null, a
# choice that is a string...): it builds its objects without validating them.
NOT_A_COMPLETION = (TypeError, AttributeError, KeyError, IndexError)


def _schema_problem(exc: Exception) -> str:
    """Why a reply is not of the schema, without quoting it (it may repeat what was sent)."""
    if isinstance(exc, pydantic.ValidationError):
        problems = sorted({f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['type']}" for e in exc.errors()})
        shown = "; ".join(problems[:5]) + (", ..." if len(problems) > 5 else "")
        return f"reply does not match the schema ({shown})"
    return f"reply is not JSON ({type(exc).__name__})"


class OpenAIChatModel:
    """A ChatModel and BatchChatModel over one endpoint and model."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None, timeout_seconds: float = 60.0,
                 max_retries: int = 3, api_version: str | None = None) -> None:
        redact_http_client_logs()  # the HTTP client logs every request's URL at INFO
        self.model = model
        self.host = redact_url(base_url).removesuffix("/…")
        self._client = openai.OpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, timeout=timeout_seconds, max_retries=max_retries,
            default_query={"api-version": api_version} if api_version else None,
        )

    # --- direct requests ------------------------------------------------------------------------------------

    def parse(self, messages: list[Message], schema: type[T], *, max_output_tokens: int | None = None) -> Parsed[T]:
        options = {"max_completion_tokens": max_output_tokens} if max_output_tokens else {}
        try:
            raw = self._client.chat.completions.with_raw_response.parse(
                model=self.model, messages=messages, response_format=schema, **options)
        except openai.APIError as exc:
            raise self._error(exc) from None
        try:
            usage = _usage(raw.http_response.json().get("usage"))
        except (ValueError, AttributeError):
            usage = Usage()
        try:
            completion = raw.parse()
        except (pydantic.ValidationError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            raise MalformedOutput(f"{self.host}: {_schema_problem(exc)}", usage) from None
        except openai.LengthFinishReasonError:
            raise LLMError("refused", f"{self.host}: the reply was cut off at max_output_tokens", usage) from None
        except openai.ContentFilterFinishReasonError:
            raise LLMError("refused", f"{self.host}: the reply was stopped by a content filter", usage) from None
        except openai.APIError as exc:
            raise self._error(exc) from None
        except NOT_A_COMPLETION:
            raise MalformedOutput(f"{self.host}: the reply is not a chat completion", usage) from None
        try:
            message = completion.choices[0].message if completion.choices else None
            refusal, parsed = (None, None) if message is None else (message.refusal, message.parsed)
        except NOT_A_COMPLETION:
            raise MalformedOutput(f"{self.host}: the reply is not a chat completion", usage) from None
        if refusal:
            raise LLMError("refused", f"{self.host}: the model refused to answer", usage)
        if parsed is None:
            raise MalformedOutput(f"{self.host}: the reply has no content", usage)
        return Parsed(parsed, usage)

    def complete(self, messages: list[Message], *, max_output_tokens: int | None = None,
                 temperature: float | None = None) -> Completion:
        options: dict[str, Any] = {}
        if max_output_tokens:
            options["max_completion_tokens"] = max_output_tokens
        if temperature is not None:
            options["temperature"] = temperature
        try:
            completion = self._client.chat.completions.create(model=self.model, messages=messages, **options)
        except openai.APIError as exc:
            raise self._error(exc) from None
        try:
            usage = _usage(completion.usage)
            content = completion.choices[0].message.content if completion.choices else None
        except NOT_A_COMPLETION:
            raise MalformedOutput(f"{self.host}: the reply is not a chat completion") from None
        if not isinstance(content, str):
            raise MalformedOutput(f"{self.host}: the reply has no content", usage)
        return Completion(content, usage)

    # --- the Batch API --------------------------------------------------------------------------------------

    def batch_line(self, request: BatchRequest, schema: type[pydantic.BaseModel]) -> dict:
        """One line of a batch input file: the same request `parse` would send."""
        body: dict[str, Any] = {"model": self.model, "messages": request.messages,
                                "response_format": type_to_response_format_param(schema)}
        if request.max_output_tokens:
            body["max_completion_tokens"] = request.max_output_tokens
        return {"custom_id": request.custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": body}

    def submit_batch(self, requests: list[BatchRequest], schema: type[pydantic.BaseModel]) -> str:
        content = "".join(json.dumps(self.batch_line(r, schema)) + "\n" for r in requests).encode()
        try:
            uploaded = self._client.files.create(file=("selfmodel-batch.jsonl", content, "application/jsonl"),
                                                 purpose="batch")
            batch = self._client.batches.create(input_file_id=uploaded.id, endpoint=BATCH_ENDPOINT,
                                                completion_window="24h")
        except openai.APIError as exc:
            raise self._error(exc) from None
        return batch.id

    def batch_state(self, batch_id: str) -> BatchState:
        try:
            batch = self._client.batches.retrieve(batch_id)
        except openai.APIError as exc:
            raise self._error(exc) from None
        return BatchState(batch.id, batch.status)

    def batch_results(self, batch_id: str, schema: type[T]) -> dict[str, Parsed[T] | LLMError]:
        try:
            batch = self._client.batches.retrieve(batch_id)
            files = [file_id for file_id in (batch.output_file_id, batch.error_file_id) if file_id]
            contents = [self._client.files.content(file_id).content for file_id in files]
        except openai.APIError as exc:
            raise self._error(exc) from None
        results: dict[str, Parsed[T] | LLMError] = {}
        for content in contents:
            for line in content.decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    custom_id, result = self._batch_result(line, schema)
                    if custom_id is not None:
                        results[custom_id] = result
        return results

    def _batch_result(self, line: str, schema: type[T]) -> tuple[str | None, Parsed[T] | LLMError]:
        try:
            record = json.loads(line)
            custom_id = record.get("custom_id")
        except (ValueError, AttributeError):
            return None, MalformedOutput(f"{self.host}: a batch output line is not JSON")
        if not isinstance(custom_id, str):
            return None, MalformedOutput(f"{self.host}: a batch output line names no request")
        try:
            return custom_id, self._batch_reply(record, schema)
        except NOT_A_COMPLETION:
            return custom_id, MalformedOutput(f"{self.host}: the batch output line is not a chat completion")

    def _batch_reply(self, record: dict, schema: type[T]) -> Parsed[T] | LLMError:
        """One batch output line's result (NOT_A_COMPLETION errors when the line is not shaped like one)."""
        response = record.get("response") or {}
        body = response.get("body") or {}
        usage = _usage(body.get("usage") if isinstance(body, dict) else None)
        status = response.get("status_code")
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        if record.get("error") or status != 200:
            kind = "rate_limited" if status == 429 else "server_error" if (status or 500) >= 500 else "rejected"
            return LLMError(kind, f"{self.host}: batch request failed (HTTP {status})", usage)
        try:
            message = body["choices"][0]["message"]
            message.get("refusal")
        except NOT_A_COMPLETION:
            return MalformedOutput(f"{self.host}: the reply has no content", usage)
        if message.get("refusal"):
            return LLMError("refused", f"{self.host}: the model refused to answer", usage)
        content = message.get("content")
        try:
            return Parsed(schema.model_validate_json(content if isinstance(content, str) else ""), usage)
        except (pydantic.ValidationError, ValueError) as exc:
            return MalformedOutput(f"{self.host}: {_schema_problem(exc)}", usage)

    # --- errors ---------------------------------------------------------------------------------------------

    def _error(self, exc: openai.APIError) -> LLMError:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APITimeoutError):
            kind = "timeout"
        elif isinstance(exc, openai.APIConnectionError):
            kind = "unavailable"
        elif isinstance(exc, openai.RateLimitError):
            kind = "rate_limited"
        elif isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            kind = "auth"
        elif isinstance(exc, openai.InternalServerError) or (status or 0) >= 500:
            kind = "server_error"
        else:
            kind = "rejected"
        where = f"HTTP {status}" if status else type(exc).__name__
        return LLMError(kind, f"{self.host}: {kind.replace('_', ' ')} ({where})")


def chat_model_from_settings(llm, environ=None) -> OpenAIChatModel:
    """The model the config's `llm` section (selfmodel.settings.LLMSettings) names; the key is read now, from
    its environment variable or Prefect Secret block (a ConfigError when missing), and kept only in memory."""
    return OpenAIChatModel(base_url=llm.base_url, model=llm.model, api_key=llm.api_key(environ),
                           timeout_seconds=llm.timeout_seconds, max_retries=llm.max_retries,
                           api_version=llm.api_version)
