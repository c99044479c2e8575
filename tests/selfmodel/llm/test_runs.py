"""A run that called a model is recorded in llm_runs with its tokens and estimated cost."""

import json
from datetime import datetime, timezone

from selfmodel.llm.base import Usage
from selfmodel.llm.budget import Budget, Prices
from selfmodel.llm.runs import LLMRunRecord, new_run_id, record_run
from warehouse.db import connect


def test_a_run_is_recorded_with_its_tokens_cost_and_cap(tmp_path) -> None:
    started = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
    budget = Budget(cap_usd=0.5, prices=Prices(0.15, 0.60))
    budget.charge(Usage(1_000_000, 100_000))
    assert not budget.reserve(Usage(10**7, 0))
    record = LLMRunRecord.of(new_run_id("judge", started), "judge", "gpt-4o-mini", started, started, 3, budget,
                             {"pairs": 3})
    con = connect(tmp_path / "warehouse.duckdb")
    record_run(con, record)
    [row] = con.execute("select purpose, model, requests, input_tokens, output_tokens, cost_usd, max_cost_usd, "
                        "stopped_by_budget, details from llm_runs").fetchall()
    assert row[:8] == ("judge", "gpt-4o-mini", 3, 1_000_000, 100_000, 0.21, 0.5, True)
    assert json.loads(row[8]) == {"pairs": 3}
    assert record.run_id.startswith("judge-20261207T020000-")
