"""A nightly run with the LLM extractor and the enrichment judge both on, against the local OpenAI-compatible
test server: grounded LLM observations reach beliefs (an invented one does not), the run spends one budget
(llm.max_cost_usd_per_run), so the judge gets only what the refresh's extractor left of it and stops cleanly at
the cap, and the next night asks the extractor's model nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.selfmodel.evals.test_enrichment import answering, chat_records, prefers_enriched

CAP_USD = 0.02
PRICE_IN, PRICE_OUT = 1.0, 2.0  # per 1M tokens
USAGE = (100, 20)  # what the server reports for every reply: $0.00014 a request


def schema_name(body: dict) -> str | None:
    return (body.get("response_format") or {}).get("json_schema", {}).get("name")


def reply(body: dict):
    if schema_name(body) == "UserProfile":  # the extractor: one grounded fact, one invented (dropped)
        facts = [{"fact": "i love jazz music", "span": "I love jazz music"}] if "jazz" in str(body) else []
        return {"role": None, "expertise": [], "verbosity": None, "formats": [],
                "facts": facts + [{"fact": "i live in berlin", "span": "I live in Berlin"}]}
    if schema_name(body) == "Verdict":
        return prefers_enriched(body)
    return answering(body)


@pytest.mark.slow
def test_a_nightly_run_adds_grounded_llm_beliefs_and_spends_one_budget_across_extractor_and_judge(
        prefect_server, openai_server, tmp_path: Path) -> None:
    from flows.nightly import nightly

    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_records()))
    config = tmp_path / "selfmodel.yaml"
    config.write_text(yaml.safe_dump({
        "warehouse": {"path": "wh/warehouse.duckdb", "analyst_copy": None},
        "snapshots": {"path": "wh/snapshots"},
        "sources": [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
        "llm": {"base_url": openai_server.base_url, "model": "m", "api_key_env": None, "max_retries": 0,
                "max_cost_usd_per_run": CAP_USD, "price_per_1m_input_tokens": PRICE_IN,
                "price_per_1m_output_tokens": PRICE_OUT},
        "beliefs": {"extractors": {"llm": {"enabled": True}}},
        "eval": {"enrichment": {"enabled": True, "sample_size": 40}},
    }))
    openai_server.reply = reply
    openai_server.usage = USAGE

    nightly(config_path=str(config), return_state=True)

    con = duckdb.connect(str(tmp_path / "wh" / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("select purpose, requests, cost_usd, max_cost_usd, stopped_by_budget "
                           "from llm_runs").fetchall()
        runs = {purpose: figures for purpose, *figures in rows}
    finally:
        con.close()
    extract_requests, extract_cost, extract_cap, _ = runs["extract"]
    judge_requests, judge_cost, judge_cap, judge_stopped = runs["judge"]
    assert extract_requests == 80 and extract_cap == CAP_USD  # one distinct text per user before and after
    assert extract_cost == pytest.approx(80 * (USAGE[0] * PRICE_IN + USAGE[1] * PRICE_OUT) / 1e6)
    assert judge_cap == pytest.approx(CAP_USD - extract_cost)  # what the extractor left, not a cap of its own
    assert judge_requests > 0 and judge_stopped  # it judged what the rest paid for, then stopped cleanly
    assert extract_cost + judge_cost <= CAP_USD
    assert len(openai_server.chat_requests) == extract_requests + judge_requests

    # The grounded fact reached beliefs through the night's refresh; the invented one did not.
    con = duckdb.connect(str(tmp_path / "wh" / "warehouse.duckdb"), read_only=True)
    try:
        llm_facts = con.execute("select distinct value from observations where extractor = 'llm'").fetchall()
        [(believers,)] = con.execute("select count(distinct user_id) from beliefs "
                                     "where key = 'fact' and value = 'i love jazz music'").fetchall()
    finally:
        con.close()
    assert llm_facts == [("i love jazz music",)] and believers == 40

    # The next night asks the extractor's model nothing (every text is cached), and the judge gets the whole cap.
    asked_before = len(openai_server.chat_requests)
    nightly(config_path=str(config), return_state=True)
    extractor_asked = [b for b in openai_server.chat_requests[asked_before:] if schema_name(b) == "UserProfile"]
    assert extractor_asked == []
