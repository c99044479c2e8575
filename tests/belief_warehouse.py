"""A tiny real warehouse with beliefs (ingest + refresh of inline JSONL), and recorded quality runs.

Built once per test session, then copied into each test's folder (a refresh takes seconds).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from selfmodel.settings import Settings, load_settings

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
REFRESHED_AT = T0 + timedelta(days=30)  # the clock of ingest and refresh
TEXTS = [
    "I'm a nurse and I love jazz music so much, really.",
    "As a nurse I work night shifts; any tips for jazz music playlists?",
    "I have two dogs and my favorite band is queen. How do I sort a list in python? `sorted(x)`",
]
# alice talks a lot (enrichable beliefs), bob a little, carol once (a cold start in all but name).
USERS = {"alice": 12, "bob": 3, "carol": 1}


def chat_records() -> list[dict]:
    records, number = [], 0
    for user, count in USERS.items():
        for day in range(count):
            number += 1
            records.append({"event_id": f"m{number}", "user_id": user, "kind": "message",
                            "text": TEXTS[day % len(TEXTS)], "occurred_at": (T0 + timedelta(days=day)).isoformat()})
    return records


def write_config(folder: Path, **sections) -> Path:
    config = {
        "warehouse": {"path": "warehouse.duckdb", "analyst_copy": None},
        "sources": [{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
        "snapshots": {"path": "snapshots", "keep": 3},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    path = folder / "selfmodel.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def build(folder: Path) -> None:
    from selfmodel.beliefs.refresh import refresh_beliefs
    from selfmodel.clock import FixedClock
    from selfmodel.ingest import ingest
    from warehouse.db import connect

    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_records()))
    settings = load_settings(write_config(folder), environ={})
    ingest(settings, clock=FixedClock(REFRESHED_AT))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings, clock=FixedClock(REFRESHED_AT))
    finally:
        con.close()


@pytest.fixture(scope="session")
def belief_warehouse_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("belief-warehouse")
    build(folder)
    return folder


@pytest.fixture
def belief_warehouse(belief_warehouse_template: Path, tmp_path: Path):
    """settings_for(**sections) -> Settings over a fresh copy of the template warehouse in tmp_path."""
    for name in ("chat.jsonl", "warehouse.duckdb"):
        shutil.copy(belief_warehouse_template / name, tmp_path / name)

    def settings_for(**sections) -> Settings:
        return load_settings(write_config(tmp_path, **sections), environ={})

    return settings_for


def record_quality(con, *, eval_passed: bool = True, blocking: int = 0, suite: str = "labeled",
                   asset: str = "beliefs", at: datetime | None = None) -> None:
    """One validation of an expectation suite and one eval run, as the nightly evaluation records them."""
    at = at or datetime.now(timezone.utc)
    con.execute(
        "insert into expectation_runs (validation_id, suite, asset, validated_at, success, blocking_failures, "
        "warnings, evaluated) values (?, 'beliefs', ?, ?, ?, ?, 0, 5)",
        [uuid.uuid4().hex, asset, at, blocking == 0, blocking],
    ).fetchall()
    con.execute(
        "insert into eval_runs (run_id, suite, started_at, ended_at, passed, metrics, bar, regressions, data_as_of, "
        "code_version, config_hash) values (?, ?, ?, ?, ?, ?, '{}', '[]', ?, 'test', 'test')",
        [uuid.uuid4().hex, suite, at - timedelta(seconds=1), at, eval_passed,
         json.dumps({"precision_at_threshold": 0.9 if eval_passed else 0.5}), REFRESHED_AT],
    ).fetchall()


def nightly_owner_and_failing_eval(settings_for, webhook_url: str) -> tuple[Settings, str]:
    """A warehouse whose latest eval run failed (so the audit refuses), with one nightly owner on a webhook."""
    from warehouse.db import connect

    settings = settings_for(alerts={"owners": {"nightly": [{"name": "Ops", "webhook": webhook_url}]},
                                    "retries": 0, "webhook_timeout_seconds": 5})
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, eval_passed=False)
    finally:
        con.close()
    return settings, str(settings.base_dir / "selfmodel.yaml")
