"""Alert delivery against real local receivers: Slack, Microsoft Teams and Discord through apprise (each in its
tool's own format), and an SMTP server that accepts the connection and never answers.

apprise aims Slack and Discord at their public hosts (`https://hooks.slack.com/services`,
`https://discord.com/api/webhooks`, class constants of its plugins): the tests point those two constants at a
local HTTP receiver, so apprise builds the payload, sends it with requests and reads the answer for real. Teams
(a Power Automate workflow URL) names its host in the URL, but always over HTTPS: the receiver serves HTTPS
with a self-signed certificate and the URL asks apprise not to verify it (`?verify=no`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from selfmodel.alerts import notify, retry_undelivered
from selfmodel.settings import ConfigError
from tests.loopback import ChatReceiver, SmtpServer, free_port
from tests.selfmodel.test_alerts import SUITE, failing, night, passing, stored_alerts  # noqa: F401
from tests.selfmodel.test_alerts import warehouse  # noqa: F401  (fixture)

# Planted in every chat URL: none of it may reach a table, a log line, an error or the JSON output.
TOKEN = "PLANTEDtoken7x9Q"


@pytest.fixture
def chat(monkeypatch, tmp_path):
    """chat(service) -> (receiver, url): a local receiver for that tool and the URL that reaches it."""
    from apprise.plugins.discord import NotifyDiscord
    from apprise.plugins.slack import NotifySlack

    receivers: list[ChatReceiver] = []

    def factory(service: str) -> tuple[ChatReceiver, str]:
        receiver = ChatReceiver(tls=service == "teams", certificate_folder=tmp_path)
        receivers.append(receiver)
        local = f"http://127.0.0.1:{receiver.port}"
        if service == "slack":
            monkeypatch.setattr(NotifySlack, "webhook_url", f"{local}/services")
            receiver.response_body = b"ok"  # what Slack answers a webhook that worked
            return receiver, f"https://hooks.slack.com/services/T0ALERTS/B0ALERTS/{TOKEN}"
        if service == "discord":
            monkeypatch.setattr(NotifyDiscord, "notify_url", f"{local}/api/webhooks")
            return receiver, f"https://discord.com/api/webhooks/123456789012345678/{TOKEN}"
        return receiver, f"workflows://127.0.0.1:{receiver.port}/0123456789abcdef0123456789abcdef/{TOKEN}/?verify=no"

    yield factory
    for receiver in receivers:
        receiver.close()


def chat_settings(make_settings, service: str, **alerts):
    return make_settings(sources=[], alerts={
        "owners": {SUITE: [{"name": "Ana", "chat": [{"service": service, "url_env": "SELFMODEL_TEST_CHAT"}]}]},
        "retries": 2, "retry_delay_seconds": 0.01, "webhook_timeout_seconds": 5, **alerts})


def message_text(service: str, payload: dict) -> tuple[str, str]:
    """(title, text) of a message, read the way the tool reads its own format."""
    if service == "slack":  # Block Kit: a header block and section blocks with the text
        blocks = payload["attachments"][0]["blocks"]
        title = next(block["text"]["text"] for block in blocks if block["type"] == "header")
        text = "\n".join(block["text"]["text"] for block in blocks if block["type"] == "section")
        return title, text
    if service == "teams":  # an Adaptive Card in a message
        [attachment] = payload["attachments"]
        assert payload["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard"
        texts = {block.get("id"): block["text"] for block in card["body"] if block["type"] == "TextBlock"}
        return texts["title"], texts["body"]
    title, _, text = payload["content"].partition("\r\n")  # Discord: content (title line, then the text)
    return title, text


@pytest.mark.parametrize("service", ["slack", "teams", "discord"])
def test_each_chat_tool_gets_the_alert_in_its_own_format(make_settings, chat, warehouse, monkeypatch, caplog,
                                                         service):
    receiver, url = chat(service)
    monkeypatch.setenv("SELFMODEL_TEST_CHAT", url)
    caplog.set_level(logging.DEBUG)  # apprise and urllib3 name the URL, token included, at DEBUG
    settings = chat_settings(make_settings, service)

    [alert] = notify(warehouse, settings, SUITE, failing(), night(0))

    assert (alert.channel, alert.delivered, alert.attempts) == (service, True, 1)
    assert len(receiver.requests) >= 1 and TOKEN in receiver.requests[0][0]  # the URL's token reached the tool
    titles, texts = zip(*(message_text(service, payload) for _, payload in receiver.requests))
    assert titles[0] == "[selfmodel] labeled failed its bar: precision_at_threshold 0.712 (needs >= 0.8)"
    text = "\n".join(texts)
    assert "Suite labeled failed its success bar and regressed in run run-2" in text
    assert "qc-017" in text and "where run_id = 'run-2'" in text
    stored = str(warehouse.execute("select * from alerts").fetchall())
    for where in (stored, json.dumps(alert.to_json()), caplog.text):
        assert TOKEN not in where

    [recovery] = notify(warehouse, settings, SUITE, passing(), night(1))
    assert recovery.delivered and recovery.channel == service
    assert message_text(service, receiver.requests[-1][1])[0] == "[selfmodel] labeled recovered: passes its bar again"


@pytest.mark.parametrize("service", ["slack", "teams", "discord"])
def test_a_failed_chat_delivery_is_recorded_retried_and_never_shows_its_token(make_settings, chat, warehouse,
                                                                             monkeypatch, caplog, service):
    receiver, url = chat(service)
    monkeypatch.setenv("SELFMODEL_TEST_CHAT", url)
    caplog.set_level(logging.DEBUG)
    settings = chat_settings(make_settings, service)
    receiver.status = 500

    [alert] = notify(warehouse, settings, SUITE, failing(), night(0))
    assert not alert.delivered and alert.attempts == 3 and len(receiver.requests) == 3
    assert alert.last_error.startswith(f"{service} delivery failed") and "500" in alert.last_error
    [row] = stored_alerts(warehouse)
    assert (row["channel"], row["attempts"], row["delivered_at"]) == (service, 3, None)

    receiver.status = 200
    [retried] = retry_undelivered(warehouse, settings, night(1))
    assert retried.alert_id == alert.alert_id and retried.delivered and retried.attempts == 4
    stored = str(warehouse.execute("select * from alerts").fetchall())
    for where in (stored, alert.last_error, json.dumps([alert.to_json(), retried.to_json()]), caplog.text):
        assert TOKEN not in where


def test_a_url_of_another_tool_or_none_at_all_is_a_config_error_that_never_quotes_it(make_settings, chat,
                                                                                    warehouse, monkeypatch):
    _, discord_url = chat("discord")
    settings = chat_settings(make_settings, "slack")
    monkeypatch.setenv("SELFMODEL_TEST_CHAT", discord_url)
    with pytest.raises(ConfigError, match="the slack URL of owner 'Ana' is not a slack URL") as raised:
        notify(warehouse, settings, SUITE, failing(), night(0))
    assert TOKEN not in str(raised.value)
    [(attempts, last_error)] = warehouse.execute("select attempts, last_error from alerts").fetchall()
    assert attempts == 1 and last_error.startswith("configuration:") and TOKEN not in last_error
    monkeypatch.delenv("SELFMODEL_TEST_CHAT")
    with pytest.raises(ConfigError, match="SELFMODEL_TEST_CHAT .* is not set"):
        retry_undelivered(warehouse, settings, night(1))


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        ([{"service": "slack"}], "give one of url_env, url_secret_block"),
        ([{"service": "slack", "url_env": "A", "url_secret_block": "b"}], "give one of url_env, url_secret_block"),
        ([{"service": "slack", "url_env": "A"}, {"service": "slack", "url_env": "B"}], "one chat entry per service"),
        ([{"service": "teams", "url": "https://example.org/x"}], "url: unknown"),
        ([{"service": "matrix", "url_env": "A"}], "service"),
    ],
)
def test_chat_settings_are_checked(make_settings, chat, expected):
    with pytest.raises(ConfigError, match=expected):
        make_settings(sources=[], alerts={"owners": {SUITE: [{"name": "Ana", "chat": chat}]}})


def test_an_smtp_server_that_never_answers_fails_the_send_within_the_timeout(make_settings, warehouse):
    import prefect_email  # noqa: F401  (imported before the clock starts: it takes seconds on a busy machine)

    # A server that accepts the connection (the kernel does, from the listen backlog) and never says hello.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    settings = make_settings(sources=[], alerts={
        "owners": {SUITE: [{"name": "Ana", "email": "ana@example.org"}]},
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "from_address": "selfmodel@example.org",
                 "timeout_seconds": 0.3},
        "retries": 1, "retry_delay_seconds": 0.01})
    sent: list = []
    started = time.monotonic()
    sender = threading.Thread(target=lambda: sent.extend(notify(warehouse, settings, SUITE, failing(), night(0))),
                              daemon=True)
    sender.start()
    sender.join(timeout=15)
    hung = sender.is_alive()
    silent.close()  # resets the waiting connections: a send without a timeout ends here, failing the test
    assert not hung, "the email send waited on a silent SMTP server for more than 15 s"
    assert time.monotonic() - started < 10
    [alert] = sent
    assert not alert.delivered and alert.attempts == 2
    assert "timed out" in alert.last_error.lower()

    server = SmtpServer(port).start()  # the relay is back: the next run delivers it
    try:
        [retried] = retry_undelivered(warehouse, settings, night(1))
        assert retried.delivered and len(server.messages) == 1
    finally:
        server.stop()


def test_smtp_timeout_defaults_to_30_seconds(make_settings):
    settings = make_settings(sources=[], alerts={"smtp": {"host": "h", "from_address": "a@b"}})
    assert settings.alerts.smtp.timeout_seconds == 30
