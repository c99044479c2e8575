"""The enrichment judge against a real local OpenAI-compatible server (the real openai client over real HTTP):
scripted answer and judge models, the A/B order mapped back, self-agreement, the budget, skipping without an
endpoint, no PII on the wire, malformed verdicts."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from selfmodel.evals.enrichment import wilson_interval
from selfmodel.evals.run import run_evals
from selfmodel.ingest import ingest
from selfmodel.settings import ConfigError, load_settings
from tests.conftest import REPO_ROOT
from warehouse.db import connect

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
USERS = 40
CHEFS = {f"u{i:02d}" for i in range(0, USERS, 4)}  # nurses at the cutoff, chefs in the window: their facts fail


def chat_records() -> list[dict]:
    """Data ends on day 39: the cutoff is day 25, the held-out window (25, 39]. Each user's facts and role are
    served at the cutoff; one fact carries a phone number, and every query in the window an email."""
    records = []

    def message(user: str, text: str, day: int) -> None:
        records.append({"event_id": f"m{len(records)}", "user_id": user, "kind": "message", "text": text,
                        "occurred_at": (T0 + timedelta(days=day)).isoformat()})

    for i in range(USERS):
        user = f"u{i:02d}"
        for day in range(0, 25, 3):
            message(user, f"I am a nurse and I love jazz music so much. I have a landline 415 555 {i:04d}.", day)
        for day in range(27, 40, 4):
            if user in CHEFS:
                message(user, f"I am a chef now. Cooking pasta for the restaurant, email me at chef{i}@example.org", day)
            else:
                message(user, f"I love jazz music, which album for a night shift? Write to fan{i}@example.org", day)
    return records


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("enrichment-warehouse")
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_records()))
    (folder / "selfmodel.yaml").write_text(yaml.safe_dump(config({})))
    settings = load_settings(folder / "selfmodel.yaml", environ={})
    ingest(settings, clock=FixedClock(T0 + timedelta(days=60)))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings, clock=FixedClock(T0 + timedelta(days=60)))
    finally:
        con.close()
    return folder


def config(sections: dict) -> dict:
    return {"warehouse": {"path": "warehouse.duckdb"},
            "sources": [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}], **sections}


def llm_section(server, **overrides) -> dict:
    return {"base_url": server.base_url, "model": "judge-m", "api_key_env": None, "max_retries": 0,
            "price_per_1m_input_tokens": 1.0, "price_per_1m_output_tokens": 2.0, "max_cost_usd_per_run": 5.0,
            **overrides}


@pytest.fixture
def warehouse(template: Path, tmp_path: Path):
    """settings_for(**sections) -> (Settings, connection) over a fresh copy of the template warehouse."""
    for name in ("chat.jsonl", "warehouse.duckdb"):
        shutil.copy(template / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    opened = []

    def settings_for(**sections):
        (tmp_path / "selfmodel.yaml").write_text(yaml.safe_dump(config(sections)))
        settings = load_settings(tmp_path / "selfmodel.yaml", environ={})
        con = connect(settings.warehouse_path)
        opened.append(con)
        return settings, con

    yield settings_for
    for con in opened:
        con.close()


def is_judge(body: dict) -> bool:
    return "response_format" in body


def answering(body: dict) -> str:
    """The answer model: says whether its prompt held the user's beliefs."""
    return "ENRICHED ANSWER" if "About the user" in body["messages"][-1]["content"] else "RAW ANSWER"


def position_of_enriched(body: dict) -> str:
    text = body["messages"][-1]["content"]
    return "A" if text.index("ENRICHED ANSWER") < text.index("RAW ANSWER") else "B"


def script(server, judge) -> None:
    server.reply = lambda body: judge(body) if is_judge(body) else answering(body)


def prefers_enriched(body: dict) -> dict:
    return {"winner": position_of_enriched(body), "reason": "uses what we know"}


def prefers_raw(body: dict) -> dict:
    return {"winner": "B" if position_of_enriched(body) == "A" else "A", "reason": "plainer"}


def enrichment_run(settings, con):
    [suite_run] = run_evals(con, settings, ["enrichment"], clock=FixedClock(T0 + timedelta(days=61)))
    return suite_run


def test_a_judge_preferring_the_enriched_answer_gives_a_win_rate_of_one(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": USERS}})
    script(openai_server, prefers_enriched)
    suite_run = enrichment_run(settings, con)
    metrics = suite_run.metrics
    assert (metrics["judged"], metrics["wins"], metrics["ties"], metrics["losses"]) == (USERS, USERS, 0, 0)
    assert metrics["enrichment_win_rate"] == 1.0
    low, high = wilson_interval(USERS, USERS, 0.95)
    assert (metrics["enrichment_win_rate_low"], metrics["enrichment_win_rate_high"]) == (low, high)
    assert 0.9 < low < 0.92 and high == 1.0  # Wilson at 95 %: 40 of 40 still leaves room below 1
    assert metrics["over_enrichment_rate"] == 0.0
    assert metrics["rejudged"] == round(0.2 * USERS) and metrics["judge_self_agreement"] == 1.0
    # 2 answers + 1 verdict per query, + 1 verdict per re-judged one; all of it recorded as one judge run
    assert metrics["requests"] == 3 * USERS + metrics["rejudged"] == len(openai_server.chat_requests)
    [(purpose, model, requests, tokens_in, cost, stopped, details)] = con.execute(
        "select purpose, model, requests, input_tokens, cost_usd, stopped_by_budget, details from llm_runs").fetchall()
    assert (purpose, model, requests, stopped) == ("judge", "judge-m", metrics["requests"], False)
    assert tokens_in == 100 * requests and cost == pytest.approx((100 * 1.0 + 20 * 2.0) * requests / 1e6)
    assert json.loads(details)["judged"] == USERS and suite_run.details["llm_run_id"]
    assert suite_run.passed  # the bar: 40 >= min_judged, win rate, over-enrichment and self-agreement clear it
    [(stored_passed, stored)] = con.execute("select passed, metrics from eval_runs where suite = 'enrichment'").fetchall()
    assert stored_passed and json.loads(stored)["enrichment_win_rate"] == 1.0
    scores = con.execute("select count(*), sum(value) from eval_results where metric = 'enriched_score'").fetchone()
    assert scores == (USERS, USERS)


def test_a_judge_preferring_the_raw_answer_gives_zero_and_counts_wrong_beliefs_as_over_enrichment(
        warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": USERS}})
    script(openai_server, prefers_raw)
    suite_run = enrichment_run(settings, con)
    metrics = suite_run.metrics
    assert metrics["enrichment_win_rate"] == 0.0 and metrics["losses"] == USERS
    assert metrics["enrichment_win_rate_high"] == pytest.approx(1 - wilson_interval(USERS, USERS, 0.95)[0])
    # Only the chefs' enriched answers used a belief the window contradicted (they said "I am a nurse" no more).
    over = {case["user_id"] for case in suite_run.details["cases"] if case["over_enriched"]}
    assert over == CHEFS
    assert metrics["over_enrichment_rate"] == len(CHEFS) / USERS
    # Per key family: the chefs' wrong beliefs are of some families only, and no family claims more.
    by_family = suite_run.details["by_key_family"]
    assert all(c["judged"] == c["losses"] <= USERS for c in by_family.values())
    assert max(c["over_enriched"] for c in by_family.values()) == len(CHEFS)
    assert min(c["over_enriched"] for c in by_family.values()) < len(CHEFS)
    assert not suite_run.passed
    assert suite_run.bar["enrichment_win_rate"]["passed"] is False


def test_the_order_is_random_and_mapped_back(warehouse, openai_server) -> None:
    """A judge that always says "A" sees the enriched answer first about half the time: a win rate of ~0.5,
    exactly the share shown as A, never 1.0; swapped re-judgements always disagree with it."""
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": USERS,
                                                                                  "rejudge_fraction": 0.5}})
    script(openai_server, lambda body: {"winner": "A", "reason": "first is best"})
    suite_run = enrichment_run(settings, con)
    metrics = suite_run.metrics
    shown_first = metrics["enriched_shown_as_a"]
    assert 0.25 * USERS < shown_first < 0.75 * USERS
    assert metrics["enrichment_win_rate"] == shown_first / USERS
    assert metrics["rejudged"] == USERS // 2 and metrics["judge_self_agreement"] == 0.0
    # The positions recorded are the positions sent: enriched as A in the first looks shown so, and in the
    # re-judgements (swapped) of those first shown as B.
    cases = suite_run.details["cases"]
    expected_first = sum(c["enriched_shown_as"] == "A" for c in cases)
    expected_first += sum(c["enriched_shown_as"] == "B" for c in cases if c["rejudged"] is not None)
    judged_on_the_wire = [b for b in openai_server.chat_requests if is_judge(b)]
    assert len(judged_on_the_wire) == USERS + USERS // 2
    assert sum(position_of_enriched(b) == "A" for b in judged_on_the_wire) == expected_first
    assert all(c["outcome"] == ("win" if c["enriched_shown_as"] == "A" else "loss") for c in cases)


def test_the_sample_and_the_order_are_seeded(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": 10, "seed": 7}})
    script(openai_server, prefers_enriched)
    first = enrichment_run(settings, con).details["cases"]
    second = enrichment_run(settings, con).details["cases"]
    assert [(c["user_id"], c["enriched_shown_as"]) for c in first] == [(c["user_id"], c["enriched_shown_as"])
                                                                       for c in second]
    assert len({c["user_id"] for c in first}) == 10
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": 10, "seed": 8}})
    third = enrichment_run(settings, con).details["cases"]
    assert [c["user_id"] for c in third] != [c["user_id"] for c in first]


def test_the_budget_stops_the_suite_cleanly_and_reports_what_was_judged(warehouse, openai_server) -> None:
    # Each request reserves its estimate (~60 tokens in, 400 out at $2/M: ~$0.0009); $0.01 holds a few queries.
    settings, con = warehouse(llm=llm_section(openai_server, max_cost_usd_per_run=0.01, concurrency=1),
                              eval={"enrichment": {"sample_size": USERS}})
    script(openai_server, prefers_enriched)
    suite_run = enrichment_run(settings, con)
    metrics = suite_run.metrics
    assert metrics["stopped_by_budget"] is True
    assert 0 < metrics["judged"] < USERS and metrics["enrichment_win_rate"] == 1.0
    assert suite_run.details["not_judged_reasons"] == {"stopped by budget": USERS - metrics["judged"]}
    assert metrics["cost_usd"] <= 0.01 and metrics["requests"] == len(openai_server.chat_requests)
    [(stopped, cost, cap)] = con.execute("select stopped_by_budget, cost_usd, max_cost_usd from llm_runs").fetchall()
    assert stopped and cost == metrics["cost_usd"] and cap == 0.01
    # too few judged for the bar: too small to judge, not a pass
    assert not suite_run.passed
    assert all(check["status"] == "too_small" for check in suite_run.bar.values())


def test_no_planted_personal_data_reaches_the_server(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": USERS}})
    script(openai_server, prefers_enriched)
    metrics = enrichment_run(settings, con).metrics
    sent = openai_server.sent_text()
    assert "About the user" in sent and "i have a landline [phone]" in sent  # the belief is served, redacted
    assert not re.search(r"@example\.org|415 555", sent)
    assert "[email]" in sent and metrics["pii_redacted"] >= 2 * USERS



def test_the_judges_reason_is_shown_redacted_and_cut_short(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": 4}})
    said = "the user fan3@example.org, at 415 555 0134, asked about jazz " + "and more " * 100
    script(openai_server, lambda body: {"winner": position_of_enriched(body), "reason": said})
    suite_run = enrichment_run(settings, con)
    reasons = [case["reason"] for case in suite_run.details["cases"]]
    assert len(reasons) == 4 and all(r.startswith("the user [email], at [phone], asked about jazz") for r in reasons)
    assert all(len(r) <= 300 for r in reasons)

def test_an_endpoint_that_refuses_the_key_is_asked_once_not_once_per_query(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server, concurrency=1), eval={"enrichment": {"sample_size": 6}})
    script(openai_server, prefers_enriched)
    openai_server.fail_next(401, times=100)
    suite_run = enrichment_run(settings, con)
    assert len(openai_server.chat_requests) == 1
    assert suite_run.metrics["judged"] == 0 and suite_run.metrics["requests"] == 1
    reasons = [case["not_judged"] for case in suite_run.details["cases"]]
    assert len(reasons) == 6 and all("(auth)" in reason for reason in reasons)


def test_a_malformed_verdict_is_not_judged_with_its_reason(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": 6}})
    verdicts = iter(["A", json.dumps({"winner": "C", "reason": "?"})])  # not JSON; not of the schema
    script(openai_server, lambda body: next(verdicts, None) or prefers_enriched(body))
    suite_run = enrichment_run(settings, con)
    metrics = suite_run.metrics
    assert (metrics["judged"], metrics["not_judged"]) == (4, 2)
    reasons = suite_run.details["not_judged_reasons"]
    assert sum(reasons.values()) == 2 and all(r.startswith("judge failed (malformed)") for r in reasons)
    assert any("winner" in r for r in reasons)  # which field was wrong, without quoting the reply
    assert metrics["enrichment_win_rate"] == 1.0


def test_without_an_endpoint_the_suite_is_skipped_and_not_run_by_default(warehouse) -> None:
    settings, con = warehouse()
    [suite_run] = run_evals(con, settings, ["enrichment"])
    assert suite_run.skipped == "no llm endpoint configured"
    assert "enrichment" not in {r.suite for r in run_evals(con, settings)}
    assert con.execute("select count(*) from eval_runs where suite = 'enrichment'").fetchone() == (0,)
    con.close()
    result = CliRunner().invoke(main, ["eval", "--suite", "enrichment"])
    assert result.exit_code == 0, result.output
    assert "enrichment: skipped (no llm endpoint configured)" in result.output


def test_enabled_without_an_endpoint_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "selfmodel.yaml").write_text(yaml.safe_dump(config({"eval": {"enrichment": {"enabled": True}}})))
    with pytest.raises(ConfigError, match="eval.enrichment is enabled, so the llm section"):
        load_settings(tmp_path / "selfmodel.yaml", environ={})


def test_enabled_it_runs_with_every_eval(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"enabled": True,
                                                                                  "sample_size": 4}})
    script(openai_server, prefers_enriched)
    runs = {r.suite: r for r in run_evals(con, settings, clock=FixedClock(T0 + timedelta(days=61)))}
    assert runs["enrichment"].metrics["judged"] == 4


def test_the_cli_prints_and_carries_the_figures(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": USERS}})
    con.close()
    script(openai_server, prefers_enriched)
    result = CliRunner().invoke(main, ["eval", "--suite", "enrichment"])
    assert result.exit_code == 0, result.output
    assert "enrichment: PASSED" in result.output
    assert re.search(r"win rate 1\.000 \[0\.9\d\d, 1\.000\] \(Wilson score, 95%\): 40 wins, 0 ties, 0 losses",
                     result.output)
    assert "over-enrichment 0.000" in result.output and "judge self-agreement 1.000 (8 re-judged" in result.output
    assert re.search(r"judged 40 of 40 sampled .* cost \$0\.\d{4} \(128 requests", result.output)
    result = CliRunner().invoke(main, ["eval", "--suite", "enrichment", "--json"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.output)["runs"]
    assert run["metrics"]["enrichment_win_rate"] == 1.0 and run["metrics"]["judged"] == USERS
    assert run["metrics"]["cost_usd"] > 0 and run["metrics"]["judge_self_agreement"] == 1.0
    assert run["metrics"]["enrichment_win_rate_low"] < 1.0


def test_the_cli_says_a_run_below_min_judged_is_too_small_to_judge(warehouse, openai_server) -> None:
    settings, con = warehouse(llm=llm_section(openai_server), eval={"enrichment": {"sample_size": 12}})
    con.close()
    script(openai_server, prefers_enriched)
    result = CliRunner().invoke(main, ["eval", "--suite", "enrichment"])
    assert result.exit_code == 6, result.output  # not a pass
    assert "enrichment: FAILED (too small to judge)" in result.output
    assert "(bar >= 0.55, too small to judge: 12 judged)" in result.output


def test_the_html_report_shows_the_judge(warehouse, openai_server) -> None:
    from selfmodel.evals.report import render_report

    settings, con = warehouse(llm=llm_section(openai_server, max_cost_usd_per_run=0.01, concurrency=1),
                              eval={"enrichment": {"sample_size": USERS}})
    script(openai_server, prefers_enriched)
    metrics = enrichment_run(settings, con).metrics
    page = render_report(con, T0 + timedelta(days=61))
    assert "<h2>Enrichment judge (latest run)</h2>" in page
    assert f"1.000 [{metrics['enrichment_win_rate_low']:.3f}, 1.000] (Wilson score, 95%)" in page
    assert f"<td>{metrics['judged']} / {USERS}</td>" in page and "stopped by budget" in page
