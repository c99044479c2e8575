"""The real openai client against a real local OpenAI-compatible server (tests/openai_server.py): structured
outputs, retries, timeouts, malformed replies, the Batch API, and a key that never shows."""

from __future__ import annotations

import logging
import time

import pytest
from pydantic import BaseModel

from selfmodel.llm.base import BatchRequest, LLMError, MalformedOutput, Usage
from selfmodel.llm.openai_client import OpenAIChatModel, chat_model_from_settings
from selfmodel.settings import LLMSettings

KEY = "sk-planted-key-7f3a9c1e5b"
HELLO = [{"role": "user", "content": "hello"}]


class Answer(BaseModel):
    role: str | None
    facts: list[str]


def model_at(server, **options) -> OpenAIChatModel:
    return OpenAIChatModel(**{"base_url": server.base_url, "model": "test-model", "api_key": KEY,
                              "timeout_seconds": 2.0, "max_retries": 2, **options})


def test_a_structured_reply_is_parsed_with_its_usage(openai_server) -> None:
    openai_server.reply = lambda body: {"role": "nurse", "facts": ["i have two dogs"]}
    openai_server.usage = (321, 45)
    parsed = model_at(openai_server).parse(HELLO, Answer, max_output_tokens=100)
    assert parsed.value == Answer(role="nurse", facts=["i have two dogs"])
    assert parsed.usage == Usage(321, 45)
    [request] = openai_server.chat_requests
    assert request["model"] == "test-model" and request["messages"] == HELLO
    assert request["max_completion_tokens"] == 100
    schema = request["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["strict"] is True
    assert set(schema["json_schema"]["schema"]["properties"]) == {"role", "facts"}


def test_a_rate_limit_then_success_is_retried(openai_server) -> None:
    openai_server.reply = lambda body: {"role": None, "facts": []}
    openai_server.fail_next(429)
    assert model_at(openai_server).parse(HELLO, Answer).value == Answer(role=None, facts=[])
    assert len(openai_server.chat_requests) == 2


def test_server_errors_that_persist_end_as_an_error_after_the_retries(openai_server) -> None:
    openai_server.fail_next(500, times=10)
    with pytest.raises(LLMError) as raised:
        model_at(openai_server, max_retries=2).parse(HELLO, Answer)
    assert raised.value.kind == "server_error" and raised.value.transient
    assert len(openai_server.chat_requests) == 3  # one request, two retries


def test_a_timeout_is_retried_and_one_that_persists_is_an_error(openai_server) -> None:
    openai_server.reply = lambda body: {"role": None, "facts": []}
    openai_server.delay_next(0.6)
    started = time.monotonic()
    assert model_at(openai_server, timeout_seconds=0.3).parse(HELLO, Answer).value.facts == []
    assert time.monotonic() - started < 3
    openai_server.delay_next(0.6, times=2)
    with pytest.raises(LLMError) as raised:
        model_at(openai_server, timeout_seconds=0.3, max_retries=1).parse(HELLO, Answer)
    assert raised.value.kind == "timeout"


@pytest.mark.parametrize("reply, problem", [
    ("{not json", "json_invalid"),
    ({"role": 7, "secret_said": "call 555 0100"}, "facts: missing"),
])
def test_a_malformed_reply_is_an_error_with_its_reason_and_cost_never_its_text(openai_server, reply, problem) -> None:
    openai_server.reply = lambda body: reply
    with pytest.raises(MalformedOutput) as raised:
        model_at(openai_server).parse(HELLO, Answer)
    assert problem in str(raised.value) and "555 0100" not in str(raised.value)
    assert raised.value.usage == Usage(100, 20)  # a malformed reply is still paid for
    assert len(openai_server.chat_requests) == 1  # and not asked again at once


def test_a_closed_port_is_unavailable(openai_server) -> None:
    url = openai_server.base_url
    openai_server.stop()
    with pytest.raises(LLMError) as raised:
        OpenAIChatModel(base_url=url, model="m", api_key=KEY, timeout_seconds=1, max_retries=0).parse(HELLO, Answer)
    assert raised.value.kind == "unavailable"


def test_a_plain_completion(openai_server) -> None:
    openai_server.reply = lambda body: "A is better."
    completion = model_at(openai_server).complete(HELLO, max_output_tokens=20, temperature=0.0)
    assert completion.text == "A is better." and completion.usage == Usage(100, 20)
    assert openai_server.chat_requests[0]["temperature"] == 0.0


def test_the_batch_api_round_trip(openai_server) -> None:
    openai_server.reply = lambda body: {"role": body["messages"][0]["content"], "facts": []}
    openai_server.batch_polls_before_done = 1
    model = model_at(openai_server)
    batch_id = model.submit_batch([BatchRequest("a", [{"role": "user", "content": "nurse"}], 50),
                                   BatchRequest("b", [{"role": "user", "content": "teacher"}])], Answer)
    assert not model.batch_state(batch_id).done
    assert model.batch_state(batch_id).done
    results = model.batch_results(batch_id, Answer)
    assert {custom_id: result.value.role for custom_id, result in results.items()} == {"a": "nurse", "b": "teacher"}
    assert results["a"].usage == Usage(100, 20)
    [upload] = openai_server.requests_to("POST", "/v1/files")
    assert b'"custom_id": "a"' in upload.body and b'"json_schema"' in upload.body
    assert openai_server.chat_requests == []  # nothing went through direct requests


def test_a_malformed_batch_reply_is_an_error_for_that_request_only(openai_server) -> None:
    openai_server.reply = lambda body: "{oops" if body["messages"][0]["content"] == "bad" else {"role": None,
                                                                                                 "facts": []}
    model = model_at(openai_server)
    batch_id = model.submit_batch([BatchRequest("ok", [{"role": "user", "content": "fine"}]),
                                   BatchRequest("bad", [{"role": "user", "content": "bad"}])], Answer)
    results = model.batch_results(batch_id, Answer)
    assert results["ok"].value.facts == [] and isinstance(results["bad"], MalformedOutput)


def test_the_key_is_sent_to_the_endpoint_and_shown_nowhere_else(openai_server, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    settings = LLMSettings(base_url=openai_server.base_url, model="m", api_key_env="MY_KEY",
                           price_per_1m_input_tokens=1, price_per_1m_output_tokens=1, max_retries=1)
    model = chat_model_from_settings(settings, environ={"MY_KEY": KEY})
    openai_server.reply = lambda body: {"role": None, "facts": []}
    model.parse(HELLO, Answer)
    openai_server.fail_next(401, retry_after_ms=None)
    with pytest.raises(LLMError) as raised:
        model.parse(HELLO, Answer)
    assert raised.value.kind == "auth"
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    captured = capsys.readouterr()
    for shown in (str(raised.value), repr(raised.value), caplog.text, captured.out, captured.err, repr(model),
                  repr(settings)):
        assert KEY not in shown


NOT_COMPLETIONS = [b"{}", b"[]", b"null", b'"text"', b'{"choices": "x"}', b'{"choices": [{"message": null}]}',
                   b'{"choices": [7]}']


@pytest.mark.parametrize("body", NOT_COMPLETIONS)
def test_a_reply_that_is_json_but_no_chat_completion_is_malformed_not_a_crash(openai_server, body) -> None:
    openai_server.completion = lambda request: body
    model = model_at(openai_server)
    with pytest.raises(MalformedOutput):
        model.parse(HELLO, Answer)
    with pytest.raises(MalformedOutput):
        model.complete(HELLO)


@pytest.mark.parametrize("reported, counted", [
    ({"prompt_tokens": "abc", "completion_tokens": 20}, Usage(0, 20)),
    ({"prompt_tokens": -5, "completion_tokens": 1e12}, Usage(0, 0)),  # not counts: as if not reported
    ({"prompt_tokens": 1e300, "completion_tokens": 7.0}, Usage(0, 7)),
    ({"prompt_tokens": True, "completion_tokens": None}, Usage(0, 0)),
])
def test_usage_that_is_not_a_token_count_counts_as_not_reported(openai_server, reported, counted) -> None:
    def completion(request: dict) -> dict:
        return {**openai_server.__class__.completion(openai_server, request), "usage": reported}

    openai_server.reply = lambda request: {"role": None, "facts": []}
    openai_server.completion = completion
    model = model_at(openai_server)
    assert model.parse(HELLO, Answer).usage == counted
    openai_server.reply = lambda request: "plain"
    assert model.complete(HELLO).usage == counted


def test_batch_output_lines_of_any_shape_are_errors_of_their_request_not_a_crash(openai_server) -> None:
    import json

    model = model_at(openai_server)
    ids = ["a", "b", "c", "d", "e", "f"]
    batch_id = model.submit_batch([BatchRequest(i, HELLO) for i in ids], Answer)
    good = {"status_code": 200, "body": {"choices": [{"message": {"content": '{"role": null, "facts": []}'}}],
                                         "usage": {"prompt_tokens": 9, "completion_tokens": "many"}}}
    lines = [{"custom_id": "a", "response": "a string"}, {"custom_id": "b", "response": {"status_code": "200"}},
             {"custom_id": "c", "response": {"status_code": 200, "body": {"choices": ["x"]}}},
             {"custom_id": "d", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": 5}}]}}},
             {"custom_id": "e", "response": {"status_code": 200, "body": "not an object"}},
             {"custom_id": "f", "response": good}, {"custom_id": 7, "response": good}, [1, 2], "text"]
    openai_server.files["file-out"] = {"content": "\n".join(map(json.dumps, lines)).encode(), "purpose": "batch_output",
                                       "filename": "output.jsonl"}
    openai_server.batches[batch_id].update(status="completed", output_file_id="file-out")
    results = model.batch_results(batch_id, Answer)
    assert set(results) == set(ids)
    assert all(isinstance(results[i], LLMError) for i in "abcde")
    assert results["f"].value == Answer(role=None, facts=[]) and results["f"].usage == Usage(9, 0)
