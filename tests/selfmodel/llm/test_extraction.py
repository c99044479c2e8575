"""The LLM extractor in a refresh, against a real local OpenAI-compatible server (tests/openai_server.py):
grounded observations reach beliefs, the cache means no request is paid twice, the budget stops cleanly and
the rest follows next run, failures are recorded and retried, the Batch API round trip, no PII on the wire,
the key nowhere, and `forget` clears the cache."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.clock import FixedClock
from selfmodel.forget import forget_user
from selfmodel.ingest import ingest
from selfmodel.llm.extract import PROMPT_VERSION
from selfmodel.nightly import refresh_step
from selfmodel.settings import Settings, load_settings
from warehouse.db import connect

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=10)
KEY = "sk-planted-9d8c7b6a5f4e3d2c1b"
KEY_ENV = "SELFMODEL_TEST_LLM_KEY"
PII = ["ana.lopez@example.org", "+1 415 555 0134", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"]
NURSE = "I'm a nurse and I have two dogs. Reach me at ana.lopez@example.org or +1 415 555 0134."
RESPONSE = "RESPONSE-TEXT: as an assistant I suggest a short walk."


def records(messages: list[tuple[str, str]], responses: bool = True) -> list[dict]:
    """(user, text) messages a day apart; each followed by the assistant's response and a thumbs-up on it."""
    rows = []
    for number, (user, text) in enumerate(messages):
        at = T0 + timedelta(days=number % 9)
        rows.append({"event_id": f"m{number}", "user_id": user, "kind": "message", "text": text,
                     "occurred_at": at.isoformat(), "session_id": f"s{number}"})
        if responses:
            rows.append({"event_id": f"r{number}", "user_id": user, "kind": "response", "text": RESPONSE,
                         "reply_to": f"m{number}", "occurred_at": (at + timedelta(minutes=1)).isoformat()})
            rows.append({"event_id": f"f{number}", "user_id": user, "kind": "feedback", "rating": 1,
                         "text": "FEEDBACK-TEXT 4111 1111 1111 1111", "reply_to": f"r{number}",
                         "occurred_at": (at + timedelta(minutes=2)).isoformat()})
    return rows


def profile_of(body: dict) -> dict:
    """A model that finds the nurse and the dogs, and, as small models do, invents a phone number and a city."""
    text = body["messages"][-1]["content"]
    answer = {"role": None, "expertise": [], "facts": [], "verbosity": None, "formats": []}
    if "nurse" in text:
        answer["role"] = {"role": "nurse", "span": "I'm a nurse"}
    if "dogs" in text:
        answer["facts"] = [{"fact": "i have two dogs", "span": "I have two dogs"},
                           {"fact": "my phone number is +1 415 555 0134", "span": "+1 415 555 0134"},
                           {"fact": "i live in berlin", "span": "I'm a nurse"}]
    if "dbt" in text:
        answer["expertise"] = [{"topic": "dbt", "level": "novice", "span": "new to dbt"}]
    return answer


class World:
    """A warehouse with inline chat events and the LLM extractor pointed at the test server."""

    def __init__(self, folder: Path, server, monkeypatch, **llm) -> None:
        self.folder, self.server = folder, server
        monkeypatch.setenv(KEY_ENV, KEY)
        server.reply = profile_of
        self.llm = {"base_url": server.base_url, "model": "test-model", "api_key_env": KEY_ENV,
                    "price_per_1m_input_tokens": 0.0, "price_per_1m_output_tokens": 1000.0, "max_retries": 2,
                    "timeout_seconds": 2.0, "concurrency": 1, "max_output_tokens": 100, "batch_poll_seconds": 0.01,
                    **llm}
        self.enabled = True

    @property
    def settings(self) -> Settings:
        config = {"warehouse": {"path": "warehouse.duckdb", "analyst_copy": None},
                  "sources": [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
                  "llm": self.llm, "beliefs": {"extractors": {"llm": {"enabled": self.enabled}}}}
        path = self.folder / "selfmodel.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return load_settings(path, environ={})

    def ingest(self, rows: list[dict]) -> None:
        path = self.folder / "chat.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        ingest(self.settings, clock=FixedClock(NOW))

    def refresh(self, full: bool = False) -> dict:
        con = connect(self.settings.warehouse_path)
        try:
            return refresh_beliefs(con, self.settings, full=full, clock=FixedClock(NOW)).to_json()
        finally:
            con.close()

    def query(self, sql: str) -> list[tuple]:
        con = connect(self.settings.warehouse_path, read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def llm_observations(self) -> set[tuple]:
        return set(self.query("select user_id, key, value, evidence_kind from observations where extractor = 'llm'"))


@pytest.fixture
def world(tmp_path: Path, openai_server, monkeypatch) -> World:
    return World(tmp_path, openai_server, monkeypatch)


def test_a_refresh_adds_grounded_llm_observations_to_beliefs_and_a_second_run_asks_nothing(world: World) -> None:
    world.ingest(records([("ana", NURSE), ("ana", NURSE + " Thanks!"), ("ana", "I'm a nurse, new to dbt."),
                          ("bo", "what is a qubit?")]))
    report = world.refresh()
    llm = report["llm"]
    assert len(world.server.chat_requests) == llm["requests"] == llm["answered"] == 4  # one per distinct text
    assert llm["items_dropped"] == 4  # the invented phone number and city, in each of the two nurse texts
    assert world.llm_observations() == {
        ("ana", "role", "nurse", "llm:role"), ("ana", "fact", "i have two dogs", "llm:fact"),
        ("ana", "expertise@dbt", "novice", "llm:expertise")}
    assert llm["observations"] == 6 and llm["events_observed"] == 4
    assert "+1 415" not in json.dumps(world.query("select items from llm_extractions"))
    # The same belief model: the LLM's evidence adds to the rule extractor's (which also reads "I'm a nurse").
    [(evidence_count,)] = world.query("select evidence_count from beliefs where user_id = 'ana' and key = 'role' "
                                      "and value = 'nurse'")
    assert evidence_count == 6  # three messages, each read by both extractors
    [(facts,)] = world.query("select count(*) from beliefs where user_id = 'ana' and key = 'fact' "
                             "and value = 'i have two dogs'")
    assert facts == 1
    # Token usage and cost per run: 4 requests x 20 output tokens at $1000 per million.
    [(requests, output_tokens, cost, stopped)] = world.query(
        "select requests, output_tokens, cost_usd, stopped_by_budget from llm_runs")
    assert (requests, output_tokens, stopped) == (4, 80, False) and cost == pytest.approx(0.08)
    # ... and in the nightly summary's refresh step.
    assert "LLM test-model: 4 requests (direct); 4 answered; 6 items kept; 4 dropped as ungrounded; 400 + 80 tokens; " \
           "~$0.0800 of $1; 0 failed; 6 observations" in refresh_step(report, 1.0).detail

    again = world.refresh()
    assert len(world.server.chat_requests) == 4 and again["llm"]["requests"] == 0 and again["llm"]["mode"] == "none"
    assert again["llm"]["observations"] == 0  # nothing observed twice
    full = world.refresh(full=True)
    assert len(world.server.chat_requests) == 4  # a full refresh re-observes from the cache, paying nothing
    assert full["llm"]["observations"] == 6
    assert world.query("select count(*) from observations where extractor = 'llm'") == [(6,)]


def test_only_user_messages_reach_the_server_and_no_pii_does(world: World) -> None:
    text = f"I'm a nurse. Card {PII[2]}, IBAN {PII[3]}, mail {PII[0]}, phone {PII[1]}."
    world.ingest(records([("ana", text), ("bo", NURSE)]))
    world.refresh()
    sent = world.server.sent_text()
    assert "I'm a nurse" in sent and "[card]" in sent and "[iban]" in sent
    for planted in [*PII, "ana.lopez", "415 555", "RESPONSE-TEXT", "FEEDBACK-TEXT"]:
        assert planted not in sent
    assert [message["role"] for body in world.server.chat_requests for message in body["messages"]] == \
        ["system", "user"] * 2


def test_the_budget_cap_stops_cleanly_and_the_rest_is_extracted_next_run(world: World) -> None:
    # Each request reserves 100 output tokens ($0.10) and uses 20 ($0.02): a cap of $0.17 lets four through
    # (the fifth would hold 0.08 spent + 0.10 reserved).
    world.llm["max_cost_usd_per_run"] = 0.17
    texts = [f"I'm a nurse, message {number}" for number in range(7)]
    world.ingest(records([("ana", text) for text in texts], responses=False))
    first = world.refresh()["llm"]
    assert (first["requests"], first["stopped"], first["left_pending"]) == (4, "budget", 3)
    assert first["cost_usd"] == pytest.approx(0.08)
    assert world.query("select stopped_by_budget, cost_usd <= max_cost_usd from llm_runs") == [(True, True)]
    assert len(world.llm_observations()) == 1  # the role, from the four answered
    role_evidence = "select evidence_count from beliefs where user_id = 'ana' and key = 'role' and value = 'nurse'"
    assert world.query(role_evidence) == [(7 + 4,)]  # the rule extractor read all seven, the LLM four
    second = world.refresh()["llm"]
    assert (second["requests"], second["stopped"], second["left_pending"]) == (3, None, 0)
    assert world.query(role_evidence) == [(7 + 7,)]  # the next run's LLM observations are folded in as new
    asked = [body["messages"][1]["content"] for body in world.server.chat_requests]
    assert sorted(asked) == sorted(texts)  # every text asked exactly once over the two runs
    assert world.query("select count(distinct event_id) from llm_observed") == [(7,)]


def test_a_rate_limit_is_retried_and_errors_that_persist_are_recorded_and_retried_next_run(world: World) -> None:
    world.ingest(records([("ana", NURSE)], responses=False))
    world.server.fail_next(429)
    first = world.refresh()["llm"]
    assert first["answered"] == 1 and len(world.server.chat_requests) == 2  # the 429, then the answer
    world.ingest([{"event_id": "m-bo", "user_id": "bo", "kind": "message", "text": "I'm a nurse, new to dbt",
                   "occurred_at": T0.isoformat()}])
    world.server.fail_next(500, times=3)  # one request and its two retries
    second = world.refresh()["llm"]
    assert (second["answered"], second["failed"], second["left_pending"]) == (0, 1, 1)
    assert world.query("select kind, attempts, reason from llm_failures") == [
        ("server_error", 1, f"http://127.0.0.1:{world.server.base_url.split(':')[2].split('/')[0]}: "
                            "server error (HTTP 500)")]
    third = world.refresh()["llm"]
    assert (third["answered"], third["left_pending"]) == (1, 0)
    assert world.query("select count(*) from llm_failures") == [(0,)]
    assert ("bo", "expertise@dbt", "novice", "llm:expertise") in world.llm_observations()


def test_a_timeout_is_retried_and_one_that_persists_waits_for_the_next_run(world: World) -> None:
    world.llm.update(timeout_seconds=0.3, max_retries=1)
    world.ingest(records([("ana", NURSE)], responses=False))
    world.server.delay_next(0.6, times=2)
    first = world.refresh()["llm"]
    assert first["failures"] == {"timeout": 1} and first["left_pending"] == 1
    second = world.refresh()["llm"]
    assert second["answered"] == 1 and ("ana", "role", "nurse", "llm:role") in world.llm_observations()


def test_a_malformed_answer_is_recorded_with_its_reason_and_given_up_after_three_attempts(world: World) -> None:
    world.ingest(records([("ana", NURSE), ("bo", "BROKEN: I'm a nurse")], responses=False))
    world.server.reply = lambda body: "{oops" if "BROKEN" in body["messages"][1]["content"] else profile_of(body)
    first = world.refresh()
    assert first["llm"]["answered"] == 1 and first["llm"]["malformed"] == 1
    assert ("ana", "role", "nurse", "llm:role") in world.llm_observations()
    [(kind, reason, attempts)] = world.query("select kind, reason, attempts from llm_failures")
    assert kind == "malformed" and "json_invalid" in reason and attempts == 1
    world.refresh()
    world.refresh()
    assert world.query("select attempts from llm_failures") == [(3,)]
    fourth = world.refresh()["llm"]
    assert fourth["requests"] == 0 and fourth["left_pending"] == 0  # given up, its reason kept
    assert len(world.server.chat_requests) == 4


def test_above_the_batch_threshold_messages_go_through_the_batch_api(world: World) -> None:
    world.llm.update(batch_threshold=2)
    world.ingest(records([("ana", NURSE), ("ana", "I'm a nurse, new to dbt"), ("bo", "hello there")],
                         responses=False))
    world.server.batch_polls_before_done = 1
    llm = world.refresh()["llm"]
    assert (llm["mode"], llm["requests"], llm["batches_submitted"], llm["batches_collected"]) == ("batch", 3, 1, 1)
    assert world.server.chat_requests == [] and len(world.server.requests_to("POST", "/v1/files")) == 1
    assert llm["answered"] == 3 and llm["output_tokens"] == 60
    assert ("ana", "expertise@dbt", "novice", "llm:expertise") in world.llm_observations()
    for planted in PII:
        assert planted not in world.server.sent_text()


def test_a_batch_not_done_in_time_is_collected_by_a_later_run_and_never_asked_twice(world: World) -> None:
    world.llm.update(batch_threshold=1, batch_wait_seconds=0)
    world.ingest(records([("ana", NURSE), ("bo", "I'm a nurse, new to dbt")], responses=False))
    world.server.batch_polls_before_done = 2  # each run polls once: the third run finds it done
    first = world.refresh()["llm"]
    assert (first["batches_submitted"], first["batches_collected"], first["answered"]) == (1, 0, 0)
    assert world.llm_observations() == set()
    second = world.refresh()["llm"]  # in flight: not asked again
    assert second["requests"] == 0 and second["batches_collected"] == 0
    third = world.refresh()["llm"]
    assert third["batches_collected"] == 1 and third["answered"] == 2 and third["requests"] == 0
    assert ("bo", "expertise@dbt", "novice", "llm:expertise") in world.llm_observations()
    assert len(world.server.requests_to("POST", "/v1/batches")) == 1


def test_an_unreachable_endpoint_leaves_the_messages_pending_and_the_refresh_completes(world: World) -> None:
    world.ingest(records([("ana", NURSE), ("bo", "I'm a teacher")], responses=False))
    world.server.stop()
    report = world.refresh()
    assert report["llm"]["stopped"] == "unavailable" and report["llm"]["left_pending"] == 2
    assert report["llm"]["requests"] == 1  # it stopped asking after the first
    assert report["beliefs_total"] > 0  # the rule extractors' beliefs are there all the same


def test_the_key_is_in_no_table_log_or_report(world: World, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    world.ingest(records([("ana", NURSE), ("bo", "I'm a teacher")], responses=False))
    world.server.fail_next(401, retry_after_ms=None)
    report = world.refresh()
    assert report["llm"]["failures"] == {"auth": 1} and report["llm"]["stopped"] == "auth"
    tables = [name for (name,) in world.query("select table_name from information_schema.tables")]
    dumped = json.dumps([world.query(f'select * from "{name}"') for name in tables], default=str)
    captured = capsys.readouterr()
    assert "test-model" in dumped  # the dump holds the llm tables
    for text in (dumped, json.dumps(report, default=str), caplog.text, captured.out, captured.err):
        assert KEY not in text and "sk-planted" not in text


def test_forget_deletes_the_users_cached_answers_and_pending_state(world: World) -> None:
    world.ingest(records([("ana", NURSE), ("bo", "I'm a nurse, new to dbt")], responses=False))
    world.refresh()
    con = connect(world.settings.warehouse_path)
    try:
        con.execute("insert into llm_batches values ('batch_x', 'r', 'test-model', ?, "
                    "[sha256(?), sha256(?)], now(), 'submitted', null)", [PROMPT_VERSION, NURSE, "other"]).fetchall()
        con.execute("insert into llm_failures values (sha256(?), 'test-model', ?, 'timeout', 'x', 1, now(), now(), "
                    "'r')", [NURSE, PROMPT_VERSION]).fetchall()
        forget_user(con, "ana")
    finally:
        con.close()
    hashes = world.query("select text_hash from llm_extractions")
    assert hashes == world.query("select sha256('I''m a nurse, new to dbt')")
    assert world.query("select distinct user_id from llm_observed") == [("bo",)]
    assert world.query("select count(*) from llm_failures") == [(0,)]
    assert world.query("select text_hashes from llm_batches") == [(list(world.query("select sha256('other')")[0]),)]


def test_off_by_default_nothing_is_asked_and_nothing_of_it_is_imported(world: World) -> None:
    world.enabled = False
    world.ingest(records([("ana", NURSE)], responses=False))
    report = world.refresh()
    assert report["llm"] is None and world.server.requests == []
    code = ("import sys, selfmodel.cli, selfmodel.beliefs.refresh, flows.nightly; "
            "print(sorted(m for m in sys.modules if m.startswith(('openai', 'selfmodel.llm'))))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[3]).stdout
    assert shown.strip() == "[]"


def test_a_missing_key_is_a_config_error_before_anything_is_sent_or_written(world: World, monkeypatch) -> None:
    from click.testing import CliRunner

    from selfmodel.cli import main

    world.ingest(records([("ana", NURSE)], responses=False))
    monkeypatch.delenv(KEY_ENV)
    result = CliRunner().invoke(main, ["--config", str(world.folder / "selfmodel.yaml"), "refresh"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"llm.api_key_env names the environment variable {KEY_ENV}, which is not set" in result.output
    assert world.server.requests == []
    assert world.query("select count(*) from llm_runs") == [(0,)] and world.query("select count(*) from beliefs") \
        == [(0,)]


def test_the_refresh_command_shows_the_llm_run(world: World) -> None:
    from click.testing import CliRunner

    from selfmodel.cli import main

    world.ingest(records([("ana", NURSE)], responses=False))
    result = CliRunner().invoke(main, ["--config", str(world.folder / "selfmodel.yaml"), "refresh"])
    assert result.exit_code == 0, result.output
    assert "LLM test-model: 1 requests (direct); 1 answered; 2 items kept; 2 dropped as ungrounded" in \
        " ".join(result.output.split())


def test_a_backfill_asks_once_whatever_its_nights_and_folds_the_answers_night_by_night(world: World) -> None:
    from selfmodel.beliefs.backfill import backfill_beliefs

    world.llm["max_cost_usd_per_run"] = 0.17  # four requests (see the budget test)
    world.ingest(records([("ana", f"I'm a nurse, day {number}") for number in range(7)], responses=False))
    con = connect(world.settings.warehouse_path)
    try:
        report = backfill_beliefs(con, world.settings, T0 + timedelta(days=1), T0 + timedelta(days=8),
                                  clock=FixedClock(NOW))
    finally:
        con.close()
    asked = [night.llm["requests"] for night in report.nights if night.llm and "requests" in night.llm]
    assert asked == [4] and len(world.server.chat_requests) == 4  # the first night only: one budget
    assert world.query("select count(*) from llm_runs") == [(1,)]
    assert world.query("select count(*) from observations where extractor = 'llm'") == [(4,)]


def test_a_new_model_applies_to_new_messages_and_a_full_refresh_asks_it_about_all(world: World) -> None:
    world.ingest(records([("ana", NURSE)], responses=False))
    world.refresh()
    world.llm["model"] = "better-model"
    world.ingest([{"event_id": "m-new", "user_id": "ana", "kind": "message", "text": "I'm a nurse, new to dbt",
                   "occurred_at": T0.isoformat()}])
    assert world.refresh()["llm"]["requests"] == 1  # the new message only: the old one keeps its observations
    full = world.refresh(full=True)["llm"]
    assert full["requests"] == 1 and full["events_observed"] == 2  # the old text, for the new model
    assert [body["model"] for body in world.server.chat_requests] == ["test-model", "better-model", "better-model"]
    assert world.query("select distinct extractor_version from observations where extractor = 'llm'") == [
        (f"better-model|{PROMPT_VERSION}",)]


def test_a_reply_that_is_no_chat_completion_is_recorded_malformed_and_the_refresh_completes(world: World) -> None:
    world.llm["concurrency"] = 2
    world.ingest(records([("ana", NURSE), ("bo", "BROKEN: I'm a teacher")], responses=False))
    answer = world.server.completion
    world.server.completion = lambda body: b"{}" if "BROKEN" in body["messages"][1]["content"] else answer(body)
    report = world.refresh()
    assert report["llm"]["answered"] == 1 and report["llm"]["failures"] == {"malformed": 1}
    assert ("ana", "role", "nurse", "llm:role") in world.llm_observations()  # the other answer is kept
    assert world.query("select kind, reason from llm_failures") == [
        ("malformed", f"{world.server.base_url.removesuffix('/v1')}: the reply is not a chat completion")]
    assert world.query("select count(*) from llm_runs") == [(1,)]


def test_a_batch_the_endpoint_does_not_know_is_closed_as_lost_and_its_messages_asked_again(world: World) -> None:
    # A batch submitted to another endpoint (base_url changed since) or deleted there is a 404 for ever: its
    # messages must not wait for it for ever.
    world.ingest(records([("ana", NURSE)], responses=False))
    con = connect(world.settings.warehouse_path)
    try:
        con.execute("insert into llm_batches values ('batch_gone', 'r', 'test-model', ?, [sha256(?)], now(), "
                    "'submitted', null)", [PROMPT_VERSION, NURSE]).fetchall()
    finally:
        con.close()
    llm = world.refresh()["llm"]
    assert world.query("select status, collected_at is not null from llm_batches") == [("lost", True)]
    assert llm["answered"] == 1 and len(world.server.chat_requests) == 1
    assert ("ana", "role", "nurse", "llm:role") in world.llm_observations()


def test_a_batch_holds_no_more_than_the_batch_api_takes_and_the_rest_waits_for_the_next_run(world: World,
                                                                                            monkeypatch) -> None:
    from selfmodel.llm import extraction

    monkeypatch.setattr(extraction, "MAX_BATCH_REQUESTS", 2)  # OpenAI's is 50,000: one batch beyond it fails whole
    world.llm.update(batch_threshold=1)
    world.ingest(records([("ana", NURSE), ("ana", "I'm a nurse, new to dbt"), ("bo", "hello there")],
                         responses=False))
    first = world.refresh()["llm"]
    assert (first["mode"], first["requests"], first["answered"], first["left_pending"]) == ("batch", 2, 2, 1)
    [upload] = world.server.requests_to("POST", "/v1/files")
    assert upload.body.count(b'"custom_id"') == 2
    second = world.refresh()["llm"]
    assert (second["answered"], second["left_pending"]) == (1, 0)
    assert world.query("select count(*) from llm_extractions") == [(3,)]


def test_an_endpoint_without_a_batch_api_is_asked_directly_and_no_message_is_given_up(world: World) -> None:
    # vLLM, llama.cpp and Ollama serve chat completions but no /v1/files or /v1/batches.
    world.llm.update(batch_threshold=1)
    world.ingest(records([("ana", NURSE), ("bo", "I'm a nurse, new to dbt")], responses=False))
    route = world.server._route
    world.server._route = lambda request: ((404, {}, {"error": {"message": "no route", "type": "not_found"}})
                                           if request.path.startswith(("/v1/files", "/v1/batches")) else route(request))
    for _ in range(3):
        llm = world.refresh()["llm"]
        if llm["answered"]:
            break
    assert (llm["mode"], llm["answered"], llm["left_pending"]) == ("direct", 2, 0)
    assert world.query("select count(*) from llm_failures") == [(0,)]
    assert ("bo", "expertise@dbt", "novice", "llm:expertise") in world.llm_observations()


def test_forget_leaves_no_hash_of_the_users_messages_in_batches_already_collected(world: World) -> None:
    # A hash of a short message confirms a guess of what the user wrote: it goes like the cached answer.
    world.llm.update(batch_threshold=1)
    world.ingest(records([("ana", NURSE), ("bo", "I'm a nurse, new to dbt")], responses=False))
    assert world.refresh()["llm"]["batches_collected"] == 1
    con = connect(world.settings.warehouse_path)
    try:
        forget_user(con, "ana")
    finally:
        con.close()
    assert world.query("select text_hashes from llm_batches") == [(list(world.query(
        "select sha256('I''m a nurse, new to dbt')")[0]),)]


def test_an_endpoint_that_hangs_stops_the_asking_after_one_request_times_out_and_the_refresh_completes(
        world: World) -> None:
    # Each request waits timeout_seconds, max_retries + 1 times: asking 1,000 messages of a hung endpoint
    # would hold the nightly run for hours.
    world.llm.update(timeout_seconds=0.2, max_retries=0)
    world.ingest(records([("ana", f"I'm a nurse, message {number}") for number in range(6)], responses=False))
    world.server.delay_next(0.5, times=100)
    report = world.refresh()
    assert (report["llm"]["requests"], report["llm"]["stopped"], report["llm"]["left_pending"]) == (1, "timeout", 6)
    assert "stopped: the endpoint did not answer in time" in refresh_step(report, 1.0).detail
    assert report["beliefs_total"] > 0  # the rule extractors' beliefs all the same



def test_an_endpoint_that_rejects_every_request_stops_the_run_and_gives_up_no_message(world: World) -> None:
    """A wrong model name or a server without structured outputs answers 404/400 to every request. That is the
    config's fault, not the messages': the run stops after a few, and no message is given up, so once the
    config is fixed every message is asked (before, three such nights gave up every message for good)."""
    world.ingest(records([(f"u{i}", f"I'm a nurse, message {i}") for i in range(8)], responses=False))
    for night in range(1, 5):
        world.server.fail_next(404, times=3)  # concurrency 1: three rejected requests, then the run stops
        refreshed = world.refresh()
        report = refreshed["llm"]
        assert (report["stopped"], report["requests"], report["answered"]) == ("rejected", 3, 0), f"night {night}"
        assert report["left_pending"] == 8 and report["failures"] == {"rejected": 3}
        assert "rejected every request" in refresh_step(refreshed, 1.0).detail
        assert world.query("select count(*) from llm_failures") == [(0,)]
    fixed = world.refresh()["llm"]
    assert (fixed["answered"], fixed["left_pending"], fixed["stopped"]) == (8, 0, None)


def test_a_rejection_among_answers_is_the_messages_own_and_is_recorded(world: World) -> None:
    """Once the endpoint has answered in a run, a rejected request is that message's own (too long, filtered):
    recorded against it, as a malformed answer is."""
    world.ingest(records([("ana", NURSE), ("bo", "I'm a nurse too")], responses=False))
    world.server.fail_next(400, times=1)  # bo's message is the newer: asked first, rejected; then ana's answered
    report = world.refresh()["llm"]
    assert (report["answered"], report["stopped"], report["left_pending"]) == (1, None, 1)
    assert world.query("select kind, attempts from llm_failures") == [("rejected", 1)]
