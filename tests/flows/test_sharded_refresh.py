"""Scale-out: a refresh whose extraction runs as parallel shards on a Dask LocalCluster equals the
single-process refresh, observation for observation and belief for belief."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from selfmodel.beliefs.observe import shard_work_root
from selfmodel.beliefs.refresh import refresh_beliefs as refresh_in_process
from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.settings import load_settings
from warehouse.db import connect

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TEXTS = ["I'm a nurse and I love jazz music.", "How do I fix `x = 1` in python?", "ok thanks",
         "My favorite band is Queen and I have two dogs.", "I am new to quantum computing, what is a qubit?"]


def make_warehouse(folder: Path) -> Path:
    folder.mkdir()
    (folder / "chat.jsonl").write_text("".join(
        json.dumps({"event_id": f"m{i}", "user_id": f"u{i % 23}", "kind": "message", "text": TEXTS[i % 5] + f" ({i})",
                    "occurred_at": (T0 + timedelta(hours=7 * i)).isoformat()}) + "\n" for i in range(400)))
    (folder / "selfmodel.yaml").write_text(
        "warehouse: {path: wh.duckdb}\nsources:\n  - {name: chat, format: jsonl, path: chat.jsonl}\n")
    settings = load_settings(folder / "selfmodel.yaml", environ={})
    ingest(settings, clock=FixedClock(T0 + timedelta(days=200)))
    return folder / "selfmodel.yaml"


def contents(config: Path) -> tuple[list, list]:
    con = duckdb.connect(str(config.parent / "wh.duckdb"), read_only=True)
    try:
        observations = sorted(con.execute(
            "select user_id, key, value, weight, observed_at, event_id, extractor from observations").fetchall())
        beliefs = sorted((u, k, v, round(c, 12), n) for u, k, v, c, n in con.execute(
            "select user_id, key, value, confidence, evidence_count from beliefs").fetchall())
    finally:
        con.close()
    return observations, beliefs


@pytest.mark.slow
def test_a_sharded_dask_refresh_equals_the_single_process_refresh(prefect_server, tmp_path: Path) -> None:
    from flows.refresh_beliefs import refresh_beliefs

    single = make_warehouse(tmp_path / "single")
    settings = load_settings(single, environ={})
    con = connect(settings.warehouse_path)
    expected_report = refresh_in_process(con, settings)
    con.close()

    sharded = make_warehouse(tmp_path / "sharded")
    report = refresh_beliefs(config_path=str(sharded), shards=3)

    assert report["events_extracted"] == expected_report.events_extracted == 400
    assert report["observations_folded"] == expected_report.observations_folded
    observations, beliefs = contents(sharded)
    assert (observations, beliefs) == contents(single)
    assert len(beliefs) > 50
    work = shard_work_root(load_settings(sharded, environ={}))
    assert not work.exists() or not any(work.iterdir())  # each run removes its own folder
