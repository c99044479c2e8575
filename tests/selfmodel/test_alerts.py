"""Owner alerts against real servers on loopback: an aiosmtpd SMTP server and an http.server webhook receiver.

Each test walks a suite through several nights with a fixed clock and checks what actually arrived at the
servers, and what the `alerts` table recorded.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from selfmodel.alerts import (
    AlertRecord,
    Incident,
    MetricChange,
    SuiteOutcome,
    WorstCase,
    notify,
    render,
    retry_undelivered,
)
from selfmodel.clock import FixedClock
from selfmodel.settings import ConfigError
from tests.loopback import SmtpServer, free_port
from warehouse.db import connect

SUITE = "labeled"
FIRST_NIGHT = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
REPRODUCE_SQL = (
    "select case_id, metric, value\n"
    "from eval_results\n"
    "where run_id = 'run-2' and metric = 'hit' and value = 0\n"
    "order by case_id"
)


@pytest.fixture
def warehouse(tmp_path: Path):
    con = connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


@pytest.fixture
def alert_settings(make_settings):
    """alert_settings(smtp_port, webhook_url, **smtp_extra) loads a config with one owner on both channels."""

    def factory(smtp_port: int, webhook_url: str, **smtp_extra):
        return make_settings(
            sources=[],
            alerts={
                "owners": {SUITE: [{"name": "Ana", "email": "ana@example.org", "webhook": webhook_url}]},
                "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                         "from_address": "selfmodel@example.org", **smtp_extra},
                "retries": 2,
                "retry_delay_seconds": 0.01,
                "webhook_timeout_seconds": 2,
            },
        )

    return factory


def night(n: int) -> FixedClock:
    return FixedClock(FIRST_NIGHT + timedelta(days=n))


def failing(run_id: str = "run-2") -> SuiteOutcome:
    return SuiteOutcome(
        run_id=run_id,
        bar_failures=(MetricChange("precision_at_threshold", after=0.712, before=0.84, threshold=">= 0.8",
                                   interval=(-0.171, -0.085), p_value=0.002),),
        regressions=(MetricChange("precision_at_threshold", after=0.712, before=0.84,
                                  interval=(-0.171, -0.085), p_value=0.002),),
        worst_cases=(
            WorstCase("qc-017", "expected role=student >= 0.6, got role=teacher at 0.71"),
            WorstCase("convai-042", "one message only, but enriched with topic=dogs at 0.64"),
            WorstCase("qc-088", "non-English user («Привет, ¿qué tal?») enriched with language=en"),
        ),
        reproduce_sql=REPRODUCE_SQL,
        data_as_of=FIRST_NIGHT - timedelta(hours=3),
    )


def passing(run_id: str = "run-9") -> SuiteOutcome:
    return SuiteOutcome(run_id=run_id, metrics={"precision_at_threshold": 0.83, "ece": 0.04})


def stored_alerts(con) -> list[dict]:
    cursor = con.execute("select * from alerts order by created_at, kind = 'recovery', channel")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_one_alert_per_incident_across_nights_and_one_recovery(smtp_server, webhook, warehouse, alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)

    first = notify(warehouse, settings, SUITE, failing("run-1"), night(0))
    assert [(a.kind, a.channel, a.delivered, a.attempts) for a in first] == [
        ("failure", "email", True, 1), ("failure", "webhook", True, 1)]
    for n in (1, 2, 3):  # still failing: the owner already knows
        assert notify(warehouse, settings, SUITE, failing(f"run-{n + 1}"), night(n)) == []
    assert len(smtp_server.messages) == 1 and len(webhook.requests) == 1

    recovered = notify(warehouse, settings, SUITE, passing("run-5"), night(4))
    assert [(a.kind, a.channel, a.delivered) for a in recovered] == [("recovery", "email", True),
                                                                     ("recovery", "webhook", True)]
    assert {a.incident_id for a in recovered} == {first[0].incident_id}
    assert notify(warehouse, settings, SUITE, passing("run-6"), night(5)) == []
    assert len(smtp_server.messages) == 2 and len(webhook.requests) == 2
    assert smtp_server.messages[1]["Subject"] == "[selfmodel] labeled recovered: passes its bar again"
    assert webhook.requests[1][1]["kind"] == "recovery"
    assert smtp_server.envelopes[0] == ("selfmodel@example.org", ["ana@example.org"])

    # It fails again later: a new incident, alerted once more.
    again = notify(warehouse, settings, SUITE, failing("run-7"), night(6))
    assert len(again) == 2 and again[0].incident_id != first[0].incident_id
    assert notify(warehouse, settings, SUITE, failing("run-8"), night(7)) == []
    assert len(smtp_server.messages) == 3 and len(webhook.requests) == 3

    rows = stored_alerts(warehouse)
    assert [(r["kind"], r["channel"], r["attempts"], r["last_error"]) for r in rows] == [
        ("failure", "email", 1, None), ("failure", "webhook", 1, None),
        ("recovery", "email", 1, None), ("recovery", "webhook", 1, None),
        ("failure", "email", 1, None), ("failure", "webhook", 1, None),
    ]
    assert all(r["delivered_at"] is not None and r["owner"] == "Ana" for r in rows)


def test_the_message_carries_metric_change_interval_worst_cases_and_sql(smtp_server, webhook, warehouse,
                                                                       alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)
    notify(warehouse, settings, SUITE, failing(), night(0))

    message = smtp_server.messages[0]
    assert message["Subject"] == "[selfmodel] labeled failed its bar: precision_at_threshold 0.712 (needs >= 0.8)"
    assert message["To"] == "ana@example.org" and message["From"] == "selfmodel@example.org"
    payload = webhook.requests[0][1]
    assert payload["subject"] == message["Subject"]
    assert payload["suite"] == SUITE and payload["kind"] == "failure" and payload["owner"] == "Ana"
    assert payload["incident_id"].startswith("labeled-20261120T020000Z-")
    for body in (smtp_server.bodies()[0], payload["text"]):
        assert "Suite labeled failed its success bar and regressed in run run-2" in body
        assert "data as of 2026-11-19 23:00 UTC" in body
        assert "precision_at_threshold: 0.840 -> 0.712 (change -0.128)" in body
        assert "interval of the change [-0.171, -0.085]; p = 0.002" in body
        assert "bar >= 0.8" in body
        assert "qc-017: expected role=student >= 0.6, got role=teacher at 0.71" in body
        assert "convai-042: one message only" in body
        assert "qc-088: non-English user («Привет, ¿qué tal?»)" in body
        for line in REPRODUCE_SQL.splitlines():
            assert f"    {line}" in body
        assert "This is the only alert for it" in body


def test_a_webhook_answering_500_is_retried_recorded_and_delivered_by_a_later_run(smtp_server, webhook,
                                                                                  warehouse, alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)
    webhook.status = 500

    first = notify(warehouse, settings, SUITE, failing(), night(0))
    email_alert, webhook_alert = first
    assert email_alert.delivered
    assert not webhook_alert.delivered and webhook_alert.attempts == 3  # 1 + 2 retries
    assert "HTTPStatusError" in webhook_alert.last_error and "500" in webhook_alert.last_error
    assert [status for status, _ in webhook.requests] == [500, 500, 500]
    row = stored_alerts(warehouse)[1]
    assert (row["delivered_at"], row["attempts"]) == (None, 3) and "500" in row["last_error"]

    webhook.status = 200  # fixed during the day; the suite still fails the next night
    second = notify(warehouse, settings, SUITE, failing("run-3"), night(1))
    assert [(a.alert_id, a.delivered, a.attempts) for a in second] == [(webhook_alert.alert_id, True, 4)]
    assert len(webhook.accepted()) == 1 and webhook.accepted()[0]["kind"] == "failure"
    assert len(smtp_server.messages) == 1  # the delivered email is not sent again
    row = stored_alerts(warehouse)[1]
    assert row["attempts"] == 4 and row["delivered_at"] == night(1).now()
    assert "500" in row["last_error"]  # the row still shows it needed retries

    assert notify(warehouse, settings, SUITE, failing("run-4"), night(2)) == []
    assert len(webhook.requests) == 4


def test_a_closed_smtp_port_is_recorded_and_the_alert_sent_when_the_server_is_back(webhook, warehouse,
                                                                                   alert_settings):
    port = free_port()  # nothing listens here yet
    settings = alert_settings(port, webhook.url)

    email_alert, webhook_alert = notify(warehouse, settings, SUITE, failing(), night(0))
    assert webhook_alert.delivered
    assert not email_alert.delivered and email_alert.attempts == 3
    assert email_alert.last_error.startswith("ConnectionRefusedError")

    server = SmtpServer(port).start()
    try:
        retried = retry_undelivered(warehouse, settings, night(1))
        assert [(a.alert_id, a.delivered) for a in retried] == [(email_alert.alert_id, True)]
        assert len(server.messages) == 1 and "precision_at_threshold" in server.messages[0]["Subject"]
        assert retry_undelivered(warehouse, settings, night(2)) == []
    finally:
        server.stop()
    assert len(webhook.requests) == 1


def test_an_undelivered_failure_reaches_the_owner_before_its_recovery(smtp_server, webhook, warehouse,
                                                                      alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)
    webhook.status = 503
    notify(warehouse, settings, SUITE, failing(), night(0))
    webhook.status = 200

    touched = notify(warehouse, settings, SUITE, passing(), night(1))
    assert [(a.kind, a.channel, a.delivered) for a in touched] == [
        ("failure", "webhook", True), ("recovery", "email", True), ("recovery", "webhook", True)]
    assert [payload["kind"] for payload in webhook.accepted()] == ["failure", "recovery"]
    assert len(smtp_server.messages) == 2


def test_delivery_from_inside_a_running_event_loop_really_sends(smtp_server, webhook, warehouse, alert_settings):
    # An async flow calls notify from inside an event loop, where Prefect's notify() would hand back an
    # un-awaited coroutine unless told to run synchronously: the alert must still arrive.
    import asyncio

    settings = alert_settings(smtp_server.port, webhook.url)

    async def nightly() -> list[AlertRecord]:
        return notify(warehouse, settings, SUITE, failing(), night(0))

    assert all(alert.delivered for alert in asyncio.run(nightly()))
    assert len(smtp_server.messages) == 1 and len(webhook.accepted()) == 1


def test_a_regression_alone_opens_an_incident_of_kind_regression(smtp_server, webhook, warehouse,
                                                                 alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)
    outcome = SuiteOutcome(
        run_id="run-3",
        regressions=(MetricChange("brier", before=0.12, after=0.19, interval=(0.03, 0.11), p_value=0.01),),
        reproduce_sql="select * from eval_results where run_id = 'run-3'",
    )
    alerts = notify(warehouse, settings, SUITE, outcome, night(0))
    assert {a.kind for a in alerts} == {"regression"}
    assert smtp_server.messages[0]["Subject"] == "[selfmodel] labeled regressed: brier 0.120 -> 0.190"
    assert "interval of the change [+0.030, +0.110]" in smtp_server.bodies()[0]


def test_a_missing_smtp_password_fails_loudly_after_the_webhook_is_sent(smtp_server, webhook, warehouse,
                                                                       alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url, username="alerts",
                              password_env="SELFMODEL_TEST_SMTP_PASSWORD")
    with pytest.raises(ConfigError, match="SELFMODEL_TEST_SMTP_PASSWORD"):
        notify(warehouse, settings, SUITE, failing(), night(0))
    assert len(webhook.accepted()) == 1 and smtp_server.messages == []
    email_row = stored_alerts(warehouse)[0]
    assert email_row["channel"] == "email" and email_row["delivered_at"] is None
    assert email_row["last_error"].startswith("configuration: alerts.smtp.password_env")


def test_suites_without_owners_or_with_a_passing_first_run_send_nothing(smtp_server, webhook, warehouse,
                                                                       alert_settings):
    settings = alert_settings(smtp_server.port, webhook.url)
    assert notify(warehouse, settings, SUITE, passing(), night(0)) == []
    assert notify(warehouse, settings, "predictive", failing(), night(0)) == []
    assert smtp_server.messages == [] and webhook.requests == []


def test_a_recovery_nobody_could_be_told_still_closes_the_incident(smtp_server, webhook, warehouse, alert_settings,
                                                                   make_settings):
    with_owner = alert_settings(smtp_server.port, webhook.url)
    without_owners = make_settings(sources=[], alerts={"owners": {}})
    opened = notify(warehouse, with_owner, SUITE, failing("run-1"), night(0))
    # the suite recovers while its owners are removed from the config: nobody hears, the incident ends anyway
    [closed] = notify(warehouse, without_owners, SUITE, passing("run-2"), night(1))
    assert (closed.kind, closed.owner, closed.channel, closed.incident_id) == (
        "recovery", "(no owners)", "none", opened[0].incident_id)
    assert closed.delivered and "no owners" in closed.last_error
    assert notify(warehouse, with_owner, SUITE, passing("run-3"), night(2)) == []  # nothing retries it
    # owners back, the suite fails again: a new incident they hear about (not swallowed by the old one)
    again = notify(warehouse, with_owner, SUITE, failing("run-4"), night(3))
    assert [a.kind for a in again] == ["failure", "failure"] and again[0].incident_id != opened[0].incident_id
    assert len(smtp_server.messages) == 2 and len(webhook.requests) == 2


def test_outcome_from_an_eval_runs_row_and_json_record():
    row = {
        "run_id": "run-4",
        "passed": False,
        "metrics": json.dumps({"precision_at_threshold": 0.7, "coverage": 0.4}),
        "bar": json.dumps({
            "precision_at_threshold": {"threshold": 0.8, "op": ">=", "value": 0.7, "passed": False},
            "coverage": {"threshold": 0.3, "op": ">=", "value": 0.4, "passed": True},
        }),
        "regressions": json.dumps([{"metric": "precision_at_threshold", "before": 0.85, "after": 0.7,
                                    "interval": [-0.2, -0.1], "p_value": 0.001, "test": "mcnemar"}]),
        "data_as_of": "2026-11-19T23:00:00+00:00",
    }
    outcome = SuiteOutcome.from_run(row, before={"precision_at_threshold": 0.85},
                                    worst_cases=[{"case_id": "qc-1", "detail": "missed role"}],
                                    reproduce_sql="select 1")
    assert outcome.bar_failures == (MetricChange("precision_at_threshold", after=0.7, before=0.85,
                                                 threshold=">= 0.8"),)
    assert outcome.regressions[0].interval == (-0.2, -0.1)
    assert outcome.worst_cases == (WorstCase("qc-1", "missed role"),)
    assert outcome.data_as_of == datetime(2026, 11, 19, 23, tzinfo=timezone.utc)
    assert not outcome.healthy

    healthy = SuiteOutcome.from_run({"run_id": "run-5", "bar": {"coverage": {"passed": True}}, "regressions": []})
    assert healthy.healthy
    with pytest.raises(ValueError, match="reproduce"):
        SuiteOutcome.from_run(row)


def test_recovery_text_names_the_incident_it_closes():
    incident = Incident("labeled-20261120T020000Z-ab12cd34", FIRST_NIGHT,
                        "[selfmodel] labeled failed its bar: precision_at_threshold 0.712 (needs >= 0.8)")
    subject, body = render(SUITE, "recovery", passing("run-9"), incident)
    assert subject == "[selfmodel] labeled recovered: passes its bar again"
    assert "in run run-9" in body
    assert "This closes incident labeled-20261120T020000Z-ab12cd34, opened 2026-11-20 02:00 UTC:" in body
    assert "precision_at_threshold 0.712 (needs >= 0.8)" in body
    assert "ece: 0.040" in body


def test_alert_records_serialise_for_the_eval_json():
    record = AlertRecord("a1", "i1", SUITE, "failure", "Ana", "email", FIRST_NIGHT, None, 3,
                         "ConnectionRefusedError: [Errno 111] Connection refused", "subject", "body")
    assert json.loads(json.dumps(record.to_json()))["delivered_at"] is None
    assert "body" not in record.to_json()


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"owners": {"s": [{"name": "Ana"}]}}, "needs an email or a webhook"),
        ({"owners": {"s": [{"name": "Ana", "email": "ana@example.org"}]}}, "alerts.smtp must be set"),
        ({"owners": {"s": [{"name": "Ana", "email": "not an address"}]}, "smtp": {"host": "h", "from_address": "a@b"}},
         "alerts.owners.s.0.email"),
        ({"owners": {"s": [{"name": "Ana", "webhook": "ftp://x"}]}}, "http:// or https://"),
        ({"owners": {"s": [{"name": "Ana", "webhook": "http://x"}, {"name": "Ana", "webhook": "http://y"}]}},
         "unique names"),
        ({"smtp": {"host": "h", "from_address": "a@b", "username": "u"}}, "username and password_env go together"),
        ({"smtp": {"host": "h", "from_address": "a@b", "password": "hunter2"}}, "alerts.smtp.password: unknown"),
    ],
)
def test_bad_alert_configs_name_their_problem(make_settings, alerts, expected):
    with pytest.raises(ConfigError, match=expected):
        make_settings(sources=[], alerts=alerts)


def test_the_smtp_password_is_read_from_the_named_variable(make_settings):
    settings = make_settings(sources=[], alerts={"smtp": {"host": "h", "from_address": "a@b", "username": "u",
                                                          "password_env": "SMTP_PW"}})
    assert settings.alerts.smtp.password({"SMTP_PW": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="SMTP_PW"):
        settings.alerts.smtp.password({"SMTP_PW": ""})


# --- a webhook URL is a credential: never stored, logged or printed whole -------------------------------------

SECRETS = ("PASSWORD", "TOKEN", "admin")


def secret_webhook(url: str) -> str:
    """The receiver's URL with a user, a password and a token in it, as a Slack/Teams URL carries its secret."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://admin:PASSWORD@{rest}?token=TOKEN"


def webhook_only_settings(make_settings, **owner):
    return make_settings(sources=[], alerts={"owners": {SUITE: [{"name": "Ana", **owner}]}, "retries": 1,
                                             "retry_delay_seconds": 0.01, "webhook_timeout_seconds": 0.5})


@pytest.mark.parametrize("failure", ["401", "500", "closed port", "timeout"])
def test_a_failing_webhook_never_stores_or_logs_its_credentials(make_settings, webhook, warehouse, caplog,
                                                               failure) -> None:
    import logging
    import socket

    url = secret_webhook(webhook.url)
    listener = None
    if failure in ("401", "500"):
        webhook.status = int(failure)
    elif failure == "closed port":
        url = secret_webhook(f"http://127.0.0.1:{free_port()}/hooks/selfmodel")
    else:  # a socket that accepts connections and never answers
        listener = socket.create_server(("127.0.0.1", 0))
        url = secret_webhook(f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/selfmodel")
    caplog.set_level(logging.DEBUG)  # httpx logs every request's URL at INFO; our own warnings too
    settings = webhook_only_settings(make_settings, webhook=url)
    try:
        [alert] = notify(warehouse, settings, SUITE, failing(), night(0))
    finally:
        if listener is not None:
            listener.close()
    assert not alert.delivered and alert.attempts == 2
    host = url.split("@", 1)[1].split("/", 1)[0]
    assert f"http://{host}/…" in alert.last_error  # which receiver: scheme and host, no more
    stored = warehouse.execute("select last_error, subject, body from alerts").fetchall()
    printed = json.dumps([alert.to_json()])  # what `selfmodel eval --json` prints
    for text in (alert.last_error, str(stored), printed, caplog.text):
        assert not [secret for secret in SECRETS if secret in text], text
    assert settings.alerts.owners[SUITE][0].webhook.get_secret_value() == url
    assert "PASSWORD" not in repr(settings) and "PASSWORD" not in str(settings.model_dump())


def test_the_webhook_url_can_come_from_an_environment_variable(make_settings, webhook, warehouse,
                                                               monkeypatch) -> None:
    settings = webhook_only_settings(make_settings, webhook_env="SELFMODEL_TEST_HOOK")
    monkeypatch.setenv("SELFMODEL_TEST_HOOK", webhook.url)
    [alert] = notify(warehouse, settings, SUITE, failing(), night(0))
    assert alert.delivered and webhook.accepted()[0]["kind"] == "failure"


def test_a_missing_or_wrong_webhook_variable_is_a_config_error_that_never_quotes_it(make_settings, webhook,
                                                                                   warehouse, monkeypatch) -> None:
    settings = webhook_only_settings(make_settings, webhook_env="SELFMODEL_TEST_HOOK")
    monkeypatch.delenv("SELFMODEL_TEST_HOOK", raising=False)
    with pytest.raises(ConfigError, match="SELFMODEL_TEST_HOOK .* is not set"):
        notify(warehouse, settings, SUITE, failing(), night(0))
    [(attempts, last_error)] = warehouse.execute("select attempts, last_error from alerts").fetchall()
    assert attempts == 1 and last_error.startswith("configuration:") and "SELFMODEL_TEST_HOOK" in last_error
    monkeypatch.setenv("SELFMODEL_TEST_HOOK", "admin:PASSWORD not a url")
    with pytest.raises(ConfigError, match="does not hold an http") as raised:
        retry_undelivered(warehouse, settings, night(1))
    assert "PASSWORD" not in str(raised.value)
    monkeypatch.setenv("SELFMODEL_TEST_HOOK", webhook.url)
    [retried] = retry_undelivered(warehouse, settings, night(2))
    assert retried.delivered and len(webhook.accepted()) == 1


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ({"webhook": "http://a", "webhook_env": "X"}, "give one of webhook, webhook_env, webhook_secret_block"),
        ({"webhook_env": "not a name"}, "name of an environment variable"),
        ({"webhook_secret_block": "Not_A_Block"}, "Prefect block name"),
    ],
)
def test_webhook_sources_are_checked(make_settings, owner, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_settings(sources=[], alerts={"owners": {SUITE: [{"name": "Ana", **owner}]}})


@pytest.mark.parametrize(
    "alerts",
    [
        {"smtp": {"host": "h", "from_address": "a@b", "password": "hunter2hunter2"}},  # misspelt: unknown setting
        {"owners": {"s": [{"name": "Ana", "webhook": "ftp://admin:hunter2hunter2@host/x"}]}},
        {"owners": {"s": [{"name": "Ana", "webhook": 12345678}]}},
        {"smtp": {"host": "h", "from_address": "a@b", "username": "u", "password_env": ["hunter2hunter2"]}},
        # a URL where a list or a mapping belongs, or in a field that holds no secret
        {"owners": {"s": "http://admin:hunter2hunter2@h/x?token=12345678"}},
        {"owners": {"s": ["http://admin:hunter2hunter2@h/x"]}},
        {"owners": {"s": [{"name": "http://admin:hunter2hunter2@h/x", "email": "a@b"}]}},
    ],
)
def test_a_config_error_never_echoes_a_secret(make_settings, alerts) -> None:
    with pytest.raises(ConfigError) as raised:
        make_settings(sources=[], alerts=alerts)
    assert "hunter2hunter2" not in str(raised.value) and "12345678" not in str(raised.value)
    assert "alerts." in str(raised.value)  # it still names the setting


def test_invalid_yaml_names_the_line_but_never_quotes_it(tmp_path: Path) -> None:
    from selfmodel.settings import load_settings

    config = tmp_path / "selfmodel.yaml"
    config.write_text('alerts:\n  owners:\n    s: [{name: Ana, webhook: "https://hooks.example.org/T0/B0/hunter2hunter2}]\n')
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+") as raised:
        load_settings(config, environ={})
    assert "hunter2hunter2" not in str(raised.value)
