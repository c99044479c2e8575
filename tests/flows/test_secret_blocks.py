"""An owner's webhook URL kept in a Prefect Secret block (here beside the session's Prefect server fixture)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from selfmodel.alerts import MetricChange, SuiteOutcome, notify
from selfmodel.clock import FixedClock
from selfmodel.settings import ConfigError
from warehouse.db import connect

NIGHT = FixedClock(datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc))
FAILING = SuiteOutcome(run_id="run-1", bar_failures=(MetricChange("precision_at_threshold", after=0.5,
                                                                  threshold=">= 0.8"),),
                       reproduce_sql="select 1")


def test_an_owner_webhook_read_from_a_prefect_secret_block(prefect_server, make_settings, webhook,
                                                           tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    Secret(value=webhook.url).save("selfmodel-test-hook", overwrite=True)
    settings = make_settings(sources=[], alerts={"retries": 0, "owners": {"labeled": [
        {"name": "Ana", "webhook_secret_block": "selfmodel-test-hook"}]}})
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        [alert] = notify(con, settings, "labeled", FAILING, NIGHT)
        assert alert.delivered and webhook.accepted()[0]["kind"] == "failure"
        missing = make_settings(sources=[], alerts={"retries": 0, "owners": {"other": [
            {"name": "Bo", "webhook_secret_block": "no-such-block"}]}})
        with pytest.raises(ConfigError, match="Prefect Secret block 'no-such-block' .* cannot be read"):
            notify(con, missing, "other", FAILING, NIGHT)
    finally:
        con.close()


def test_a_chat_url_read_from_a_prefect_secret_block(prefect_server, make_settings, monkeypatch,
                                                     tmp_path: Path) -> None:
    from apprise.plugins.discord import NotifyDiscord
    from prefect.blocks.system import Secret

    from tests.loopback import ChatReceiver

    receiver = ChatReceiver()
    monkeypatch.setattr(NotifyDiscord, "notify_url", f"http://127.0.0.1:{receiver.port}/api/webhooks")
    Secret(value="https://discord.com/api/webhooks/123456789012345678/BLOCKtoken55").save(
        "selfmodel-test-discord", overwrite=True)
    settings = make_settings(sources=[], alerts={"retries": 0, "owners": {"labeled": [
        {"name": "Ana", "chat": [{"service": "discord", "url_secret_block": "selfmodel-test-discord"}]}]}})
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        [alert] = notify(con, settings, "labeled", FAILING, NIGHT)
        assert alert.delivered and alert.channel == "discord"
        [(path, payload)] = receiver.requests
        assert path.endswith("/BLOCKtoken55") and payload["content"].startswith("[selfmodel] labeled failed its bar")
        assert "BLOCKtoken55" not in str(con.execute("select * from alerts").fetchall())
    finally:
        con.close()
        receiver.close()
