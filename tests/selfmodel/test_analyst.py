"""Analysts read while flows write: a reader process querying the analyst copy in a loop never fails,
and neither does a writer process ingesting and refreshing (and exporting after each step) meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from datetime import datetime, timezone

import duckdb
import pytest

from selfmodel.analyst import export_analyst_copy
from selfmodel.beliefs.read import user_beliefs
from tests.belief_warehouse import belief_warehouse, belief_warehouse_template, record_quality  # noqa: F401
from tests.conftest import REPO_ROOT
from warehouse.db import WarehouseBusyError, connect

# What a flow does: open the warehouse for one short write step, export the copy, close; repeat.
WRITER = r"""
import json, sys
from datetime import datetime, timedelta, timezone
from selfmodel.analyst import export_analyst_copy
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.ingest import ingest_source
from selfmodel.settings import load_settings
from warehouse.db import connect

settings = load_settings(sys.argv[1], environ={})
rounds = int(sys.argv[2])
log = settings.base_dir / "chat.jsonl"
T = datetime(2024, 3, 1, tzinfo=timezone.utc)
for round_ in range(rounds):
    with open(log, "a") as handle:
        for i in range(5):
            handle.write(json.dumps({"event_id": f"w{round_}-{i}", "user_id": f"writer{i}", "kind": "message",
                                     "text": "I'm a teacher and I love jazz music, truly.",
                                     "occurred_at": (T + timedelta(days=round_, hours=i)).isoformat()}) + "\n")
    con = connect(settings.warehouse_path)
    try:
        report = ingest_source(con, settings, settings.source("chat"))
        assert report.status == "committed" and report.loaded == 5, report
        export_analyst_copy(con, settings)
    finally:
        con.close()
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings)
        export_analyst_copy(con, settings)
    finally:
        con.close()
    print(f"round {round_} done", flush=True)
"""

# An analyst: a new session per round of queries (as from a notebook cell or the duckdb shell), or one
# session kept open the whole time (it keeps reading the file it opened: older, never broken). Separate
# processes: DuckDB hands a process the instance it already has open for a path, so a second session in
# the process of a long-lived one would see that one's (older) file too.
READER = r"""
import json, sys, time
from pathlib import Path
import duckdb

copy, stop, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
QUERIES = {
    "beliefs_as_of": "select key, value, confidence from belief_history where user_id = 'alice' "
                     "and valid_from <= '2024-02-15' and (valid_to is null or valid_to > '2024-02-15') "
                     "order by confidence desc",
    "quarantine_by_reason": "select * from quarantine_by_reason order by records desc",
    "eval_metric_over_time": "select started_at, value from eval_metrics where suite = 'labeled' "
                             "and metric = 'precision_at_threshold' order by started_at",
    "events": "select count(*) from events",
}
errors, counts, queries = [], set(), 0
session = duckdb.connect(str(copy), read_only=True) if mode == "long" else None
while not stop.exists():
    try:
        con = session or duckdb.connect(str(copy), read_only=True)
        try:
            for name, sql in QUERIES.items():
                rows = con.execute(sql).fetchall()
                queries += 1
                if name == "events":
                    counts.add(rows[0][0])
        finally:
            if session is None:
                con.close()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.02)
print(json.dumps({"errors": errors[:5], "error_count": len(errors), "queries": queries, "event_counts": sorted(counts)}))
"""

ROUNDS = 2


def test_a_reader_querying_the_analyst_copy_and_a_writer_never_fail_each_other(belief_warehouse) -> None:
    settings = belief_warehouse(warehouse={"analyst_copy": "analyst/warehouse.duckdb"})
    con = connect(settings.warehouse_path)
    try:
        record_quality(con)
        export_analyst_copy(con, settings)
        [(events_before,)] = con.execute("select count(*) from events").fetchall()
    finally:
        con.close()
    copy = settings.analyst_copy_path
    stop = settings.base_dir / "STOP"
    readers = {mode: subprocess.Popen([sys.executable, "-c", READER, str(copy), str(stop), mode], cwd=REPO_ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for mode in ("fresh", "long")}
    time.sleep(0.5)
    writer = subprocess.run([sys.executable, "-c", WRITER, str(settings.base_dir / "selfmodel.yaml"), str(ROUNDS)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    stop.touch()
    reports = {}
    for mode, reader in readers.items():
        out, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err[-3000:]
        reports[mode] = json.loads(out.strip().splitlines()[-1])
    assert writer.returncode == 0, writer.stderr[-3000:]
    assert writer.stdout.count("done") == ROUNDS
    for mode, report in reports.items():
        assert report["error_count"] == 0, (mode, report["errors"])
        assert report["queries"] > 50, mode
    # A new session sees the copy move forward while the writer works; a long one keeps its snapshot.
    assert len(reports["fresh"]["event_counts"]) >= 2
    assert max(reports["fresh"]["event_counts"]) == events_before + 5 * ROUNDS
    assert reports["long"]["event_counts"] == [events_before]

    final = duckdb.connect(str(copy), read_only=True)
    try:
        assert final.execute("select count(*) from beliefs where user_id like 'writer%'").fetchone()[0] > 0
        [(exported_at, source)] = final.execute("select exported_at, source_warehouse from analyst_export").fetchall()
        assert source == str(settings.warehouse_path)
        assert final.execute("select metric, value from eval_metrics").fetchall() == [("precision_at_threshold", 0.9)]
        as_of = final.execute("select key, value, confidence from beliefs_as_of('alice', '2024-01-05')").fetchall()
    finally:
        final.close()
    live = connect(settings.warehouse_path, read_only=True)
    try:  # the macro answers what `selfmodel beliefs alice --as-of 2024-01-05` answers
        expected = user_beliefs(live, settings, "alice", as_of=datetime(2024, 1, 5, tzinfo=timezone.utc))["beliefs"]
    finally:
        live.close()
    assert [(k, v) for k, v, _ in as_of] == [(b["key"], b["value"]) for b in expected] and expected
    assert [c for _, _, c in as_of] == pytest.approx([b["confidence"] for b in expected], rel=1e-12)
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # no temporary copies left


def test_the_live_warehouse_is_what_analysts_must_not_open(belief_warehouse) -> None:
    # Why the copy exists: while a flow holds the warehouse, even a read-only session is locked out.
    settings = belief_warehouse()
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(30)", str(settings.warehouse_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        try:
            connect(settings.warehouse_path, read_only=True)
            raise AssertionError("expected the live warehouse to be locked")
        except WarehouseBusyError:
            pass
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.parametrize("folder, name", [
    pytest.param("dir 'a\" b", "my \"wh\" 'x'.duckdb", id="quotes-and-spaces"),
    pytest.param("wh", "analyst_export.duckdb", id="named-like-the-export"),  # the database the copy is attached as
])
def test_a_warehouse_file_named_with_quotes_and_spaces_ingests_refreshes_publishes_and_exports(
        tmp_path: Path, folder: str, name: str) -> None:
    from click.testing import CliRunner

    from selfmodel.cli import main
    from selfmodel.settings import load_settings
    from tests.belief_warehouse import chat_records, write_config

    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(record) + "\n" for record in chat_records()))
    config = write_config(tmp_path, warehouse={"path": f"{folder}/{name}",
                                               "analyst_copy": f"{folder}/an 'alyst\".duckdb"})
    settings = load_settings(config, environ={})
    run = lambda *args: CliRunner().invoke(main, ["--config", str(config), *args])  # noqa: E731
    for step in ("ingest", "refresh", "analyst-copy"):
        result = run(step)
        assert result.exit_code == 0, (step, result.output, result.exception)
    con = connect(settings.warehouse_path)
    try:
        record_quality(con)
    finally:
        con.close()
    published = run("publish", "--json")
    assert published.exit_code == 0 and json.loads(published.stdout)["published"], published.output
    assert json.loads(run("lookup", "alice", "--json").stdout)["beliefs"]

    copy = duckdb.connect(str(settings.analyst_copy_path), read_only=True)
    try:
        assert copy.execute("select count(*) from events").fetchone() == (16,)
        assert copy.execute("select count(*) from beliefs where user_id = 'alice'").fetchone()[0] > 0
        assert copy.execute("select source_warehouse from analyst_export").fetchone() == (str(settings.warehouse_path),)
    finally:
        copy.close()


def test_a_finished_write_reaches_the_analyst_copy_and_a_failed_one_does_not(belief_warehouse) -> None:
    from selfmodel.analyst import open_for_writing

    settings = belief_warehouse(warehouse={"analyst_copy": "analyst/warehouse.duckdb"})
    with open_for_writing(settings) as con:
        con.execute("create table finished_step as select 1 as one")
    copy = duckdb.connect(str(settings.analyst_copy_path), read_only=True)
    try:
        assert copy.execute("select one from finished_step").fetchall() == [(1,)]
    finally:
        copy.close()
    with pytest.raises(RuntimeError, match="the step failed"):
        with open_for_writing(settings) as con:
            con.execute("create table failed_step as select 2 as two")
            raise RuntimeError("the step failed")
    copy = duckdb.connect(str(settings.analyst_copy_path), read_only=True)
    try:  # the copy still shows the last finished step, and only it
        names = {name for (name,) in copy.execute("select table_name from information_schema.tables").fetchall()}
        assert "finished_step" in names and "failed_step" not in names
    finally:
        copy.close()
    connect(settings.warehouse_path).close()  # closed either way: the file is free


def test_every_writing_command_leaves_the_analyst_copy_current(belief_warehouse) -> None:
    """A command's refresh is in the analyst copy at once: no one has to run analyst-copy by hand."""
    from click.testing import CliRunner

    from selfmodel.cli import main

    settings = belief_warehouse(warehouse={"analyst_copy": "analyst/warehouse.duckdb"})
    result = CliRunner().invoke(main, ["--config", str(settings.base_dir / "selfmodel.yaml"), "refresh", "--full"])
    assert result.exit_code == 0, result.output
    live = connect(settings.warehouse_path, read_only=True)
    try:
        runs = live.execute("select list(refresh_id order by refresh_id) from refresh_runs").fetchone()[0]
    finally:
        live.close()
    copy = duckdb.connect(str(settings.analyst_copy_path), read_only=True)
    try:
        assert len(runs) > 1 and copy.execute("select list(refresh_id order by refresh_id) from refresh_runs"
                                              ).fetchone()[0] == runs
    finally:
        copy.close()


def test_a_step_that_another_always_follows_can_leave_the_copy_to_it(belief_warehouse) -> None:
    from selfmodel.analyst import open_for_writing

    settings = belief_warehouse(warehouse={"analyst_copy": "analyst/warehouse.duckdb"})
    with open_for_writing(settings, analyst_copy=False) as con:
        con.execute("create table validated as select 1 as one")
    assert not settings.analyst_copy_path.exists()
    with open_for_writing(settings) as con:
        pass
    copy = duckdb.connect(str(settings.analyst_copy_path), read_only=True)
    try:
        assert copy.execute("select one from validated").fetchall() == [(1,)]
    finally:
        copy.close()
