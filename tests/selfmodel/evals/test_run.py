"""Eval suites end to end on tiny warehouses: the predictive verdicts, labeled cases, the bar, storage,
regressions against the last passing run, and alerts reaching real loopback servers once per incident."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from selfmodel.evals.notify import owner_alert_hook
from selfmodel.evals.run import run_evals
from selfmodel.ingest import ingest
from tests.conftest import REPO_ROOT
from warehouse.db import connect

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def message(n: int, user: str, text: str, day: float) -> dict:
    return {"event_id": f"m{n}", "user_id": user, "kind": "message", "text": text,
            "occurred_at": (T0 + timedelta(days=day)).isoformat()}


def chat_history() -> list[dict]:
    """Data ends on day 40, so the predictive cutoff is day 26 and the window (26, 40]."""
    events, n = [], 0
    for day in range(0, 26, 3):  # nurse keeps talking about jazz, before and after the cutoff
        events.append(message(n := n + 1, "nurse", "I am a nurse and I love jazz music so much.", day))
    for day in range(27, 40, 4):
        events.append(message(n := n + 1, "nurse", "I love jazz music, the concert was great.", day))
    for day in range(0, 26, 3):  # cook talked about music, then only about food
        events.append(message(n := n + 1, "cook", "I love jazz music and my band plays on weekends.", day))
    for day in range(27, 40, 4):
        events.append(message(n := n + 1, "cook", "Cooking pasta with a new recipe for the restaurant.", day))
    events.append(message(n := n + 1, "newcomer", "I love jazz music.", 39))
    events.append(message(n := n + 1, "nurse", "Back from a long shift.", 40))
    return events


@pytest.fixture
def warehouse(make_settings, tmp_path: Path):
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(e) + "\n" for e in chat_history()))
    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    for case_file in (tmp_path / "expectations" / "evals").glob("labeled_*.yaml"):
        case_file.unlink()
    (tmp_path / "expectations" / "evals" / "demo_users.yaml").write_text("users: [nurse]\n")

    def build(**sections):
        settings = make_settings([{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}], **sections)
        ingest(settings, clock=FixedClock(T0 + timedelta(days=60)))
        con = connect(settings.warehouse_path)
        refresh_beliefs(con, settings)
        return settings, con

    return build


def write_cases(tmp_path: Path, cases: list[dict]) -> None:
    (tmp_path / "expectations" / "evals" / "labeled_chat.yaml").write_text(yaml.safe_dump({
        "suite": "labeled_chat", "source": "chat", "criterion": "as in labeled_qc", "cases": cases}))


def case(case_id: str, user: str, expect: list[dict]) -> dict:
    return {"id": case_id, "user_id": user, "as_of": (T0 + timedelta(days=40)).isoformat(), "expect": expect,
            "why": "built for the test"}


ONE_CUTOFF = {"predictive": {"backtest_cutoffs": 1}}  # the newest cutoff alone, as before the backtest


def test_predictive_judges_beliefs_at_the_cutoff_against_the_next_window(warehouse) -> None:
    settings, con = warehouse(eval=ONE_CUTOFF)
    [predictive] = run_evals(con, settings, ["predictive"], clock=FixedClock(T0 + timedelta(days=41)))
    con.close()
    assert predictive.details["cutoff"].startswith("2024-03-27")
    assert predictive.metrics["active_users"] == 3  # nurse, cook, newcomer
    assert predictive.metrics["users_enriched"] == 2  # the newcomer was unknown at the cutoff
    assert predictive.metrics["coverage"] == pytest.approx(2 / 3)
    fact = predictive.details["per_key"]["fact"]
    assert fact["beliefs_served"] == 2  # the nurse's two facts; the cook states none in the window
    assert fact["precision_at_threshold"] == pytest.approx(0.5)  # jazz was said again, "i am a nurse" was not
    topic = predictive.details["per_key"]["topic"]
    assert topic["beliefs_judged"] == 3  # cook: music; nurse: music, health (their window mentions topics)
    assert topic["beliefs_served"] == 0  # nine mentions in 26 days stay under the threshold (prior 4)


def test_evaluating_a_past_night_sees_only_the_events_up_to_it(warehouse) -> None:
    settings, con = warehouse()
    night = T0 + timedelta(days=30, hours=12)  # the newest event by then is the nurse's on day 27
    [predictive] = run_evals(con, settings, ["predictive"], clock=FixedClock(T0 + timedelta(days=41)), as_of=night)
    [(data_as_of,)] = con.execute("select data_as_of from eval_runs where run_id = ?", [predictive.run_id]).fetchall()
    con.close()
    assert data_as_of == T0 + timedelta(days=27) and predictive.details["data_as_of"] == data_as_of
    assert predictive.details["cutoff"].startswith("2024-03-14")  # day 27 minus the 14-day cutoff
    assert predictive.details["horizon_end"].startswith("2024-03-28")  # nothing after the night is judged
    assert predictive.metrics["active_users"] == 2  # the newcomer (day 39) had not come yet


def test_predictive_source_sets_the_cutoff_when_sources_cover_different_periods(make_settings, tmp_path: Path) -> None:
    """A second source running 100 days later would push the cutoff past the chat data: the window would be
    empty for its users. eval.predictive.source keeps the chat's own cutoff and window."""
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(e) + "\n" for e in chat_history()))
    later = [message(1000 + n, "late-user", "I love jazz music so much.", 140 + n) for n in range(3)]
    (tmp_path / "later.jsonl").write_text("".join(json.dumps(e) + "\n" for e in later))
    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    sources = [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"},
               {"name": "later", "format": "jsonl", "path": "later.jsonl"}]
    verdicts = {}
    for chosen in (None, "chat"):
        settings = make_settings(sources, eval={"predictive": {"source": chosen, "backtest_cutoffs": 1}})
        ingest(settings, clock=FixedClock(T0 + timedelta(days=160)))
        con = connect(settings.warehouse_path)
        refresh_beliefs(con, settings)
        [verdicts[chosen]] = run_evals(con, settings, ["predictive"], clock=FixedClock(T0 + timedelta(days=161)))
        con.close()
    assert verdicts[None].details["cutoff"].startswith("2024-07-07")  # the later source's end minus 14 days
    assert verdicts[None].metrics["active_users"] == 1  # only late-user speaks in that window
    assert verdicts["chat"].details["cutoff"].startswith("2024-03-27")
    assert verdicts["chat"].metrics["active_users"] == 3  # nurse, cook, newcomer, as with the chat alone


def test_a_predictive_source_that_is_not_configured_is_a_config_error(make_settings) -> None:
    from selfmodel.settings import ConfigError

    with pytest.raises(ConfigError, match="eval.predictive.source 'nope' is not a configured source"):
        make_settings([{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}], eval={"predictive": {"source": "nope"}})


def test_labeled_cases_bar_and_storage(warehouse, tmp_path: Path) -> None:
    write_cases(tmp_path, [
        case("nurse-role", "nurse", [{"key": "role", "value": "nurse", "min_confidence": 0.6}]),
        case("nurse-jazz", "nurse", [{"key": "fact", "value": "I love jazz music!", "min_confidence": 0.6}]),
        case("newcomer-cold", "newcomer", [{"key": "topic", "absent": True}, {"key": "role", "absent": True}]),
        case("cook-chef", "cook", [{"key": "role", "value": "chef", "min_confidence": 0.6}]),
    ])
    settings, con = warehouse()
    [labeled] = run_evals(con, settings, ["labeled_chat"], clock=FixedClock(T0 + timedelta(days=41)))
    assert labeled.metrics["case_pass_rate"] == pytest.approx(0.75)
    assert [failed["case"] for failed in labeled.details["failed_cases"]] == ["cook-chef"]
    assert labeled.passed is False and labeled.bar == {}  # no bar for this suite: the verdict needs one
    stored = con.execute("select suite, passed, metrics ->> 'cases' from eval_runs").fetchall()
    outcomes = dict(con.execute("select case_id, value from eval_results where metric = 'passed'").fetchall())
    con.close()
    assert stored == [("labeled_chat", False, "4")]
    assert outcomes == {"nurse-role": 1.0, "nurse-jazz": 1.0, "newcomer-cold": 1.0, "cook-chef": 0.0}


def test_eval_json_contract_and_exit_code(warehouse, tmp_path: Path) -> None:
    settings, con = warehouse(eval=ONE_CUTOFF)
    con.close()
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "eval", "--json",
                                       "--suite", "predictive"])
    payload = json.loads(result.stdout)
    [suite_run] = payload["runs"]
    assert {"suite", "passed", "metrics", "bar", "regressions", "alerts"} <= suite_run.keys()
    assert suite_run["bar"]["precision_at_threshold"]["value"] == pytest.approx(0.5)  # the nurse's facts, 1 of 2
    assert result.exit_code == (0 if suite_run["passed"] else 6) == 6  # 0.5 precision fails the 0.75 bar


def test_a_regression_alerts_owners_once_per_incident_and_recovery_once(warehouse, tmp_path: Path,
                                                                         smtp_server, webhook) -> None:
    good = [case(f"nurse-{i}", "nurse", [{"key": "role", "value": "nurse", "min_confidence": 0.6}]) for i in range(10)]
    write_cases(tmp_path, good)
    bar = yaml.safe_load((tmp_path / "expectations" / "bar.yaml").read_text())
    bar["suites"]["labeled_chat"] = {"case_pass_rate": {"min": 0.0}}  # only regressions can fail it
    (tmp_path / "expectations" / "bar.yaml").write_text(yaml.safe_dump(bar))
    settings, con = warehouse(alerts={
        "owners": {"labeled_chat": [{"name": "Ana", "email": "ana@example.org", "webhook": webhook.url}]},
        "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "security": "none", "from_address": "selfmodel@example.org"},
        "retries": 0, "retry_delay_seconds": 0})
    hook = owner_alert_hook(settings)

    def night(n: int):
        [suite_run] = run_evals(con, settings, ["labeled_chat"], clock=FixedClock(T0 + timedelta(days=41 + n)),
                                notify=hook)
        return suite_run

    assert night(1).passed and not webhook.accepted()
    # Quality drops: the same ten cases now expect what the data does not support.
    write_cases(tmp_path, [case(c["id"], "nurse", [{"key": "role", "value": "chef", "min_confidence": 0.6}]) for c in good])
    second, third = night(2), night(3)
    assert not second.passed and second.regressions[0]["metric"] == "case_pass_rate"
    assert second.regressions[0]["p_value"] < 0.05
    assert not third.passed and third.regressions  # still failing, but the incident is already open
    assert len(smtp_server.messages) == 1 and len(webhook.accepted()) == 1
    body = smtp_server.bodies()[0]
    assert "case_pass_rate: 1.000 -> 0.000" in body and "p = 0.00195" in body  # McNemar: 10 of 10 flipped
    assert "nurse-0: role=chef confidence 0.00 < 0.6" in body and "and 5 more" not in body
    assert f"opened {T0 + timedelta(days=43):%Y-%m-%d}" in body  # the run's clock, not the wall clock
    assert "select case_id from eval_results" in body and "nurse-0" in body
    [(newest_event,)] = con.execute("select max(occurred_at) from events").fetchall()
    assert f"data as of {newest_event.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" in body
    write_cases(tmp_path, good)
    assert night(4).passed
    night(5)
    kinds = [payload["kind"] for payload in webhook.accepted()]
    con.close()
    assert kinds == ["regression", "recovery"]
    assert len(smtp_server.messages) == 2


def test_eval_json_and_stderr_show_a_failing_webhook_only_redacted(warehouse, tmp_path: Path, webhook) -> None:
    """The owner's webhook URL holds a password and a token, and the receiver refuses them: the alert's
    error, as `eval --json` prints it, stderr and the alerts table name the receiver by scheme and host."""
    webhook.status = 401
    scheme, rest = webhook.url.split("://", 1)
    secret_url = f"{scheme}://admin:PASSWORD@{rest}?token=TOKEN"
    settings, con = warehouse(alerts={"owners": {"predictive": [{"name": "Ana", "webhook": secret_url}]},
                                      "retries": 0, "webhook_timeout_seconds": 2})
    con.close()
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "eval", "--json",
                                       "--suite", "predictive"])
    assert result.exit_code == 6, result.output  # the tiny warehouse fails the predictive bar: owners are alerted
    [alert] = json.loads(result.stdout)["runs"][0]["alerts"]
    assert not alert["delivered_at"] and "answered 401" in alert["last_error"]
    assert f"http://{rest.split('/')[0]}/…" in alert["last_error"]
    con = connect(settings.warehouse_path, read_only=True)
    stored = con.execute("select * from alerts").fetchall()
    con.close()
    for text in (result.stdout, result.stderr, str(stored)):
        assert "PASSWORD" not in text and "TOKEN" not in text and "admin" not in text


@pytest.mark.parametrize("demo_file", [None, "users: [ghost]\n"], ids=["no-demo-file", "demo-users-not-in-the-data"])
def test_without_demo_users_the_demo_suite_is_skipped_and_eval_and_publish_succeed(warehouse, tmp_path: Path,
                                                                                   demo_file: str | None) -> None:
    """A new user's own data has no demo users: demo_vs_production has nothing to judge. The bar names it,
    yet it is skipped, not failed: `eval` exits 0 and the snapshot is published."""
    bar_path = tmp_path / "expectations" / "bar.yaml"
    bar = yaml.safe_load(bar_path.read_text())
    bar["suites"]["predictive"] = {"beliefs_judged": {"min": 1}}  # the tiny warehouse passes this predictive bar
    bar_path.write_text(yaml.safe_dump(bar))
    assert "demo_vs_production" in bar["suites"]
    settings, con = warehouse(snapshots={"require_eval": False})  # no expectation runs on this warehouse
    con.close()
    demo_path = tmp_path / "expectations" / "evals" / "demo_users.yaml"
    demo_path.unlink()
    if demo_file is not None:
        demo_path.write_text(demo_file)
    config = ["--config", str(tmp_path / "selfmodel.yaml")]
    evaluated = CliRunner().invoke(main, [*config, "eval"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "demo_vs_production: skipped (no demo users" in evaluated.stdout
    assert "predictive: PASSED" in evaluated.stdout
    published = CliRunner().invoke(main, [*config, "publish", "--json"])
    assert published.exit_code == 0, published.output
    assert json.loads(published.stdout)["published"] is True


def test_per_family_figures_reach_eval_results_the_html_report_and_the_eval_command(warehouse, tmp_path: Path) -> None:
    from selfmodel.evals.report import render_report

    settings, con = warehouse()
    [predictive] = run_evals(con, settings, ["predictive"], clock=FixedClock(T0 + timedelta(days=41)))
    stored = dict(con.execute("select metric, value from eval_results where run_id = ? and case_id = 'key=topic'",
                              [predictive.run_id]).fetchall())
    page = render_report(con, T0 + timedelta(days=41))
    con.close()
    topic = predictive.details["per_key"]["topic"]
    assert {k: stored[k] for k in ("beliefs_judged", "ece", "ece_low", "ece_high", "log_loss", "users")} == {
        k: pytest.approx(topic[k]) for k in ("beliefs_judged", "ece", "ece_low", "ece_high", "log_loss", "users")}
    assert sum(row["count"] for row in topic["reliability"]) == topic["beliefs_judged"]
    assert "aria-label=\"Reliability: topic\"" in page and "aria-label=\"Reliability: fact\"" in page
    assert f"<td>topic</td><td>{topic['beliefs_judged']}</td>" in page
    assert "too small to judge (&lt; 1000)" in page  # the tiny warehouse has fewer than 1000 of every family
    printed = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "eval", "--suite", "predictive"])
    assert "key family" in printed.stdout and "too small to judge: " in printed.stdout
    assert any(line.split()[:2] == ["topic", str(topic["beliefs_judged"])] for line in printed.stdout.splitlines())


def test_regressions_compare_per_user_sums_over_the_cutoffs(warehouse) -> None:
    """Each user's held/served and enriched/active are sums over the backtest's cutoffs; a run stored before
    the backtest (no "active" count) judged one cutoff, so its users count as active once."""
    from selfmodel.evals.run import _per_user

    settings, con = warehouse(eval={"predictive": {"backtest_cutoffs": 3, "backtest_every_days": 7}})
    [predictive] = run_evals(con, settings, ["predictive"], clock=FixedClock(T0 + timedelta(days=41)))
    con.close()
    assert [c["cutoff"][:10] for c in predictive.details["cutoffs"]] == ["2024-03-27", "2024-03-20", "2024-03-13"]
    results = {(case, metric): value for case, metric, value in predictive.results}
    served = _per_user(results, "held", "served")
    assert sum(s for _, s in served.values()) == predictive.metrics["beliefs_served"]
    assert sum(h for h, _ in served.values()) == round(predictive.metrics["precision_at_threshold"]
                                                       * predictive.metrics["beliefs_served"])
    enriched = _per_user(results, "enriched", "active")
    assert sum(a for _, a in enriched.values()) == predictive.metrics["active_users"] > len(enriched)
    assert sum(e for e, _ in enriched.values()) == predictive.metrics["users_enriched"]
    before_backtest = {("user:nurse", "enriched"): 1.0, ("user:cook", "enriched"): 0.0}
    assert _per_user(before_backtest, "enriched", "active") == {"user:nurse": (1, 1), "user:cook": (0, 1)}
