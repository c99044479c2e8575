"""The refresh_beliefs flow (the nightly's refresh step) with the LLM extractor on, its key in a Prefect Secret
block, against the local OpenAI-compatible test server: grounded LLM observations reach beliefs, and the nightly
summary's refresh step shows the requests and cost."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import yaml

from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.nightly import refresh_step
from selfmodel.settings import load_settings

KEY = "sk-block-held-4e5f6a7b8c9d"
AT = datetime(2026, 11, 2, tzinfo=timezone.utc)


def test_the_refresh_flow_adds_grounded_llm_observations_with_the_key_from_a_secret_block(
        prefect_server, openai_server, tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    from flows.refresh_beliefs import refresh_beliefs

    Secret(value=KEY).save("selfmodel-test-llm-key", overwrite=True)
    messages = ["I'm a nurse and I have two dogs.", "I'm a nurse, keep it short please.", "what is a qubit?"]
    (tmp_path / "chat.jsonl").write_text("".join(
        json.dumps({"event_id": f"m{i}", "user_id": "ana", "kind": "message", "text": text,
                    "occurred_at": AT.isoformat()}) + "\n" for i, text in enumerate(messages)))
    config = tmp_path / "selfmodel.yaml"
    config.write_text(yaml.safe_dump({
        "warehouse": {"path": "wh.duckdb", "analyst_copy": None},
        "sources": [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
        "llm": {"base_url": openai_server.base_url, "model": "test-model", "api_key_env": None,
                "api_key_secret_block": "selfmodel-test-llm-key", "price_per_1m_input_tokens": 0.15,
                "price_per_1m_output_tokens": 0.6},
        "beliefs": {"extractors": {"llm": {"enabled": True}}},
    }))
    ingest(load_settings(config, environ={}), clock=FixedClock(AT))

    def answer(body: dict) -> dict:
        text = body["messages"][-1]["content"]
        return {"role": {"role": "nurse", "span": "I'm a nurse"} if "nurse" in text else None, "expertise": [],
                "facts": [{"fact": "i have two dogs", "span": "I have two dogs"}] if "dogs" in text else [],
                "verbosity": {"verbosity": "concise", "span": "keep it short"} if "short" in text else None,
                "formats": []}

    openai_server.reply = answer
    report = refresh_beliefs(config_path=str(config))
    assert report["llm"]["answered"] == 3 and report["llm"]["observations"] == 4
    assert {r.headers["authorization"] for r in openai_server.requests} == {f"Bearer {KEY}"}
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        kinds = con.execute("select evidence_kind, count(*) from observations where extractor = 'llm' "
                            "group by all order by all").fetchall()
        [(evidence,)] = con.execute("select evidence_count from beliefs where key = 'style.verbosity' "
                                    "and value = 'concise'").fetchall()
    finally:
        con.close()
    assert kinds == [("llm:fact", 1), ("llm:role", 2), ("llm:verbosity", 1)]
    assert evidence >= 1
    assert "LLM test-model: 3 requests (direct)" in refresh_step(report, 1.0).detail
    assert KEY not in json.dumps(report)
