"""One registry of quarantine reasons: what the code gives is in it, and an unknown one is said loudly."""

from __future__ import annotations

import logging
import re

from selfmodel.quarantine import QUARANTINE_REASONS, unregistered
from tests.conftest import REPO_ROOT


def test_every_reason_the_sql_gives_is_registered() -> None:
    given = set()
    for path in (REPO_ROOT / "warehouse" / "queries").glob("*.sql"):
        text = path.read_text()
        given |= set(re.findall(r"'reason':\s*'([a-z_0-9]+)'", text))
        given |= set(re.findall(r"then '([a-z_0-9]+)'\s+else n\.reason", text))
        given |= set(re.findall(r"then '([a-z_0-9]+)' end as reason", text))
    assert len(given) > 15
    assert unregistered(given) == []


def test_every_reason_an_adapter_gives_is_registered() -> None:
    given = set()
    for path in (REPO_ROOT / "selfmodel" / "sources").glob("*.py"):
        text = path.read_text()
        given |= set(re.findall(r"""(?:pre_reason=|reason = |reason, detail = |Problem\(|add_row\(None, \(|problems=\[\()"([a-z_0-9]+)\"""",
                                text))
    assert {"bot_account", "vote_on_deleted_post", "unreadable_file", "csv_malformed", "missing_messages"} <= given
    assert unregistered(given) == []


def test_an_unregistered_reason_is_logged_as_an_error_and_the_record_kept(tmp_path, monkeypatch, caplog) -> None:
    """The registry lost a reason: ingest still quarantines the record, and logs what is wrong."""
    from selfmodel.ingest import ingest
    from selfmodel.settings import load_settings
    from warehouse.db import connect

    monkeypatch.delitem(QUARANTINE_REASONS, "blank_line")
    (tmp_path / "logs.jsonl").write_text('{"event_id": "e1", "user_id": "u1", "occurred_at": "2024-05-01T10:00:00Z", '
                                         '"kind": "message", "text": "hi"}\n\n{"event_id": "e2"}\n')
    (tmp_path / "selfmodel.yaml").write_text("warehouse: {path: wh.duckdb, analyst_copy: null}\n"
                                             "sources:\n  - {name: app, format: jsonl, path: logs.jsonl}\n")
    settings = load_settings(tmp_path / "selfmodel.yaml", environ={})
    ingest_logger = logging.getLogger("selfmodel.ingest")
    collected = [handler for handler in ingest_logger.handlers if hasattr(handler, "messages")]
    with caplog.at_level(logging.ERROR, logger="selfmodel.ingest"):
        [report] = ingest(settings)
    for handler in collected:  # this test wants the error the autouse check would fail on
        handler.messages.clear()
    assert report.quarantined == 2
    assert any("'blank_line' is not in selfmodel.quarantine.QUARANTINE_REASONS" in r.getMessage()
               for r in caplog.records)
    con = connect(settings.warehouse_path, read_only=True)
    try:
        assert sorted(r for (r,) in con.execute("select reason from quarantine").fetchall()) == \
            ["blank_line", "missing_user_id"]
    finally:
        con.close()
