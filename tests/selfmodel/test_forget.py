"""`selfmodel forget`: the user goes from quarantined records they can still be recognised in, eval results
and the texts quoting them, expectation details and their pages, the analyst copy, and every kept snapshot
(so no rollback serves them again); a re-read of the same logs brings none of it back."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from selfmodel.beliefs.observe import shard_work_root
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from selfmodel.forget import forget, forget_user, quoted_value_pattern, user_field_pattern
from selfmodel.ingest import ingest
from selfmodel.publish import publish, read_log
from tests.belief_warehouse import (  # noqa: F401
    REFRESHED_AT, belief_warehouse, belief_warehouse_template, record_quality)
from warehouse.db import connect
from warehouse.online import BeliefStore, read_current, verify_snapshot

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def line(event_id: str, user: str, text: str, day: int) -> str:
    return json.dumps({"event_id": event_id, "user_id": user, "kind": "message", "text": text,
                       "occurred_at": (T0 + timedelta(days=day)).isoformat()})


# What alice left behind in one log: good lines, and bad ones that still name her in different ways.
ALICE_BAD = [
    '{"event_id": "a8", "user_id": "alice", "kind": "message", "text": "my diagnosis is',  # truncated
    '{"event_id": "a9", "user_id": "alice", "text": "caf\xe9 \xff\xfe at my address"}',  # bad bytes (latin-1 below)
    '{"event_id": "a10", "user_id": "alice", "kind": "message", "text": "when?", "occurred_at": "yesterday"}',
    '{"event_id": "a11", "author": {"id": "alice"}, "text": "trailing", }',
]
BOB_BAD = ['{"event_id": "b8", "user_id": "bob", "kind": "message", "text": "cut off']


def write_log(path: Path, order: list[str]) -> None:
    path.write_bytes(b"".join(text.encode("latin-1" if "\xff" in text else "utf-8") + b"\n" for text in order))


@pytest.fixture
def chat_log(make_settings, tmp_path: Path):
    good = [line(f"a{i}", "alice", "I'm a nurse and I love jazz music.", i) for i in range(4)]
    good += [line(f"b{i}", "bob", "I'm a teacher and I love cooking pasta.", i) for i in range(4)]
    records = good + ALICE_BAD + BOB_BAD
    write_log(tmp_path / "chat.jsonl", records)
    settings = make_settings([{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
                             warehouse={"path": "warehouse.duckdb", "analyst_copy": "analyst/warehouse.duckdb"})
    [report] = ingest(settings, clock=FixedClock(T0 + timedelta(days=10)))
    assert report.quarantined == len(ALICE_BAD) + len(BOB_BAD)
    return settings, records


def quarantined_texts(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [text or "" for (text,) in con.execute("select raw_text from quarantine").fetchall()]
    finally:
        con.close()


def test_forget_reaches_quarantined_records_even_where_the_user_field_cannot_be_read(chat_log, tmp_path) -> None:
    settings, records = chat_log
    config = str(tmp_path / "selfmodel.yaml")
    assert CliRunner().invoke(main, ["--config", config, "analyst-copy"]).exit_code == 0
    assert sum("alice" in text for text in quarantined_texts(settings.analyst_copy_path)) == len(ALICE_BAD)

    # Deleted rows' bytes would stay in the file's free blocks: the warehouse file itself must not hold them.
    assert settings.warehouse_path.read_bytes().count(b"love jazz music") > 0

    result = CliRunner().invoke(main, ["--config", config, "forget", "alice", "--yes"])
    assert result.exit_code == 0, result.output
    assert settings.warehouse_path.read_bytes().count(b"love jazz music") == 0
    assert settings.warehouse_path.read_bytes().count(b"cooking pasta") > 0  # bob's are still there
    report = json.loads(result.stdout)
    assert report["deleted"]["events"] == 4
    assert report["deleted"]["quarantined"] + report["deleted"]["quarantine_redacted"] == len(ALICE_BAD)
    for copy in (settings.warehouse_path, settings.analyst_copy_path):
        texts = quarantined_texts(copy)
        assert not [text for text in texts if "alice" in text], copy
        assert sum("bob" in text for text in texts) == len(BOB_BAD)  # others' bad records stay as they were
    shown = CliRunner().invoke(main, ["--config", config, "quarantine", "--json", "--limit", "100"])
    assert "alice" not in shown.stdout and "bob" in shown.stdout

    # The same log is sent again, lines moved: nothing of alice's comes back, bob's records stay counted once.
    write_log(tmp_path / "chat.jsonl", list(reversed(records)))
    [again] = ingest(settings, clock=FixedClock(T0 + timedelta(days=11)))
    assert again.balanced and again.loaded == 0
    texts = quarantined_texts(settings.warehouse_path)
    assert not [text for text in texts if "alice" in text]
    assert sum("bob" in text for text in texts) == len(BOB_BAD)

    # A broken line of hers never seen before (a log re-sent from a backup) is hers by its user field: it
    # is quarantined as forgotten_user, without its text, like her readable records.
    with open(tmp_path / "chat.jsonl", "ab") as log:
        log.write(b'{"event_id": "a12", "user_id": "alice", "kind": "message", "text": "from the backup\n')
    [late] = ingest(settings, clock=FixedClock(T0 + timedelta(days=12)))
    assert late.quarantined == 1
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        assert con.execute("select reason, user_id, raw_text from quarantine where batch_id = ?",
                           [late.batch_id]).fetchall() == [("forgotten_user", None, None)]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("record", "names_alice"),
    [
        ('{"user_id": "alice", "text": "cut', True),
        ('{"author": {"id": "alice"}, "text": "x",}', True),  # any quoted JSON string value
        ('{"user_id": "alicex", "text": "cut', False),
        ('{"alice": 1, "text": "cut', False),  # a key is not a value
        ("alice wrote this, but not as JSON", False),  # free text cannot be told from a mention
        ('{"user_id": "ali\\u0063e"', False),  # escaped differently: documented as not matched
    ],
)
def test_which_records_whose_user_is_unreadable_name_a_string_id(record: str, names_alice: bool) -> None:
    assert matches(quoted_value_pattern("alice"), record) is names_alice


@pytest.mark.parametrize(
    ("record", "names_1837"),
    [
        ('{"user_id": 1837, "text": "cut', True),
        ('{"user_id": "1837", "text": "cut', True),
        ('{"uid": 1837, "text": "cut', True),  # the source maps user_id to uid
        ('{"user_id": 18370, "text": "cut', False),
        ('{"user_id": 1837.5', False),
        ('{"score": 1837, "text": "cut', False),  # a number in another field is not the user
        ('{"text": "1837"}', False),  # nor is a string in another field, in a record whose user was read
        ('<row Id="5" PostTypeId="4" OwnerUserId="-1" LastEditorUserId="1837" Body="tag wiki', True),
        ('<row Id="1837" PostTypeId="1" OwnerUserId="12" Body="x', False),
    ],
)
def test_which_records_name_a_user_in_a_user_field(record: str, names_1837: bool) -> None:
    assert matches(user_field_pattern("1837", ["uid", "user_id"]), record) is names_1837


def matches(pattern: str, text: str) -> bool:
    """As the warehouse matches: DuckDB's RE2, not Python's re."""
    return duckdb.execute("select regexp_matches(?, ?)", [text, pattern]).fetchone()[0]


def test_forget_reaches_eval_results_and_every_text_quoting_the_users_cases(belief_warehouse, tmp_path) -> None:
    settings = belief_warehouse()
    (tmp_path / "expectations" / "evals").mkdir(parents=True)
    (tmp_path / "expectations" / "evals" / "labeled_chat.yaml").write_text(
        "suite: labeled_chat\nsource: chat\ncases:\n- {id: chat-nurse-7, user_id: alice}\n- {id: chat-8, user_id: bob}\n")
    (tmp_path / "expectations" / "evals" / "demo_users.yaml").write_text("users: [alice, carol]\n")
    page = tmp_path / "data_docs" / "validations" / "events_batch" / "v1.html"
    page.parent.mkdir(parents=True)
    page.write_text("<td>alice</td>")
    con = connect(settings.warehouse_path)
    cases = {"user:alice": 1.0, "user:alicex": 1.0, "user:bob": 0.0, "chat-nurse-7": 0.0, "chat-8": 1.0}
    for case_id, value in cases.items():
        con.execute("insert into eval_results values ('r2', 'predictive', ?, 'held', ?)", [case_id, value])
    con.execute("insert into eval_runs values ('r2', 'predictive', now(), now(), false, '{}', '{}', ?, null, 't', 't')",
                [json.dumps([{"metric": "coverage", "worst_cases": ["user:alice", "user:bob", "chat-nurse-7"]}])])
    body = ("Worst cases:\n  user:alice: worse on coverage than run r1\n  user:alicex: worse on coverage\n"
            "  chat-nurse-7: role=nurse confidence 0.00 < 0.6\n")
    con.execute("insert into alerts values ('a1', 'i1', 'predictive', 'regression', 'Ana', 'email', now(), null, 0, "
                "null, '[selfmodel] predictive regressed (user:alice)', ?)", [body])
    con.execute("insert into expectation_runs values ('v1', 'events_batch', 'b1', now(), false, 1, 0, 3, ?, 'b1')",
                [str(page)])
    con.execute("insert into expectation_results values ('v1', 'expect_column_values_to_match_regex(user_id)', "
                "'block', false, 2, ?)", [json.dumps({"partial_unexpected_list": ["alice", "bob"]})])
    con.close()

    leftover = shard_work_root(settings) / "refresh-killed" / "events-shard-0000.parquet"  # a kill -9's remains
    leftover.parent.mkdir(parents=True)
    leftover.write_text("alice's events")
    staged = settings.warehouse_path.parent / f"{settings.warehouse_path.name}.staging-killed" / "000-logs.jsonl"
    staged.parent.mkdir()  # an ingest killed while it held a remote source's objects
    staged.write_text('{"user_id": "alice"}\n')
    theirs = settings.warehouse_path.parent / "shards" / "logs.jsonl"  # a folder of the user's own, beside it
    theirs.parent.mkdir()
    theirs.write_text("{}\n")

    report = forget(settings, "alice", clock=FixedClock(REFRESHED_AT))
    assert not leftover.exists() and not staged.parent.exists() and theirs.exists()
    assert report.deleted["eval_results"] == 2 and report.deleted["alerts_redacted"] == 1
    assert report.data_docs_pages == 1 and not page.exists()
    assert sorted(Path(p).name for p in report.still_named_in) == ["demo_users.yaml", "labeled_chat.yaml"]
    con = connect(settings.warehouse_path, read_only=True)
    try:
        assert sorted(c for (c,) in con.execute("select case_id from eval_results").fetchall()) == \
            ["chat-8", "user:alicex", "user:bob"]
        [(regressions,)] = con.execute("select regressions from eval_runs").fetchall()
        assert json.loads(regressions)[0]["worst_cases"] == ["(forgotten)", "user:bob", "(forgotten)"]
        [(subject, text)] = con.execute("select subject, body from alerts").fetchall()
        assert subject == "[selfmodel] predictive regressed ((forgotten))"
        assert "  (forgotten): worse on coverage than run r1" in text and "user:alicex" in text
        assert "chat-nurse-7" not in text and "(forgotten): role=nurse" in text
        [(details, pages)] = con.execute("select details, data_docs from expectation_results join expectation_runs "
                                         "using (validation_id)").fetchall()
        assert json.loads(details)["partial_unexpected_list"] == ["(forgotten)", "bob"] and pages is None
    finally:
        con.close()


def publish_on(settings, day: int) -> str:
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, at=REFRESHED_AT + timedelta(days=day, hours=1))
        result = publish(settings, con=con, clock=FixedClock(REFRESHED_AT + timedelta(days=day, hours=2)))
    finally:
        con.close()
    assert result.published, result.reason
    return result.version


def users_in(folder: Path) -> set[str]:
    return set(pq.read_table(folder / "beliefs.parquet").column("user_id").to_pylist())


def test_forget_rewrites_every_kept_snapshot_so_no_rollback_serves_the_user(belief_warehouse) -> None:
    settings = belief_warehouse()
    first = publish_on(settings, 1)
    con = connect(settings.warehouse_path)
    con.execute("delete from belief_history where user_id = 'carol'")  # the second snapshot differs
    con.close()
    second = publish_on(settings, 2)
    folder = settings.snapshots_path
    assert read_current(folder) == second and "alice" in users_in(folder / first) & users_in(folder / second)

    report = forget(settings, "alice", clock=FixedClock(REFRESHED_AT + timedelta(days=3)))
    rewritten = {change["version"]: change["rewritten_as"] for change in report.snapshots}
    assert set(rewritten) == {first, second}
    assert not (folder / first).exists() and not (folder / second).exists()
    assert read_current(folder) == rewritten[second]  # the one in service was replaced at once
    for new, old in ((rewritten[first], first), (rewritten[second], second)):
        manifest = verify_snapshot(folder / new)
        assert new[:16] == old[:16]  # the same creation time; a new content hash
        assert "alice" not in users_in(folder / new)
        assert b"alice" not in (folder / new / "beliefs.arrow").read_bytes()  # the served copy lost them too
        assert manifest["served_files"]["beliefs.arrow"]["rows"] == manifest["rows"]
        assert manifest["audit"]["passed"] and manifest["redactions"][0]["replaces"] == old
        assert "alice" not in (folder / new / "manifest.json").read_text()
    assert users_in(folder / rewritten[first]) == {"bob", "carol"} and users_in(folder / rewritten[second]) == {"bob"}
    assert "alice" not in (folder / "log.jsonl").read_text()

    config = str(settings.base_dir / "selfmodel.yaml")
    refused = CliRunner().invoke(main, ["--config", config, "rollback", first])
    assert refused.exit_code == 2 and "rewritten without a forgotten user" in refused.stderr
    assert rewritten[first] in refused.stderr
    assert CliRunner().invoke(main, ["--config", config, "rollback", rewritten[first]]).exit_code == 0
    with BeliefStore.open(folder, watch=False) as store:
        assert store.version == rewritten[first]
        assert store.get("alice").cold_start and not store.get("bob").cold_start
        assert store.enrich("hi", "alice").enriched_query == "hi"
    lookup = CliRunner().invoke(main, ["--config", config, "lookup", "alice", "--json"])
    assert json.loads(lookup.stdout)["beliefs"] == []

    again = forget(settings, "alice", clock=FixedClock(REFRESHED_AT + timedelta(days=4)))
    assert again.snapshots == []  # nothing left to rewrite
    assert [entry["action"] for entry in read_log(folder)].count("redacted") == 2


def test_a_forget_killed_after_a_rewrite_was_renamed_in_finishes_when_run_again(belief_warehouse) -> None:
    from selfmodel.publish import forget_in_snapshots

    settings = belief_warehouse()
    version = publish_on(settings, 1)
    folder = settings.snapshots_path
    backup = folder.parent / f"backup-{uuid.uuid4().hex}"
    import shutil

    shutil.copytree(folder / version, backup)
    [change] = forget_in_snapshots(folder, "alice", FixedClock(REFRESHED_AT + timedelta(days=3)))
    shutil.copytree(backup, folder / version)  # as if killed before the old folder went
    (folder / "CURRENT").write_text(version + "\n")  # ... and before CURRENT was switched
    [again] = forget_in_snapshots(folder, "alice", FixedClock(REFRESHED_AT + timedelta(days=4)))
    assert again == change  # the same rewrite, recognised
    assert read_current(folder) == change["rewritten_as"] and not (folder / version).exists()


def test_a_rollback_never_serves_a_user_a_stopped_forget_left_in_a_snapshot(belief_warehouse) -> None:
    """A forget that stopped after its warehouse transaction (killed, a full disk) has not rewritten the
    snapshots yet: a rollback to one holding the user is refused until forget runs again."""
    settings = belief_warehouse()
    first = publish_on(settings, 1)
    con = connect(settings.warehouse_path)
    con.execute("delete from belief_history where user_id = 'carol'")
    con.close()
    second = publish_on(settings, 2)
    con = connect(settings.warehouse_path)
    try:
        forget_user(con, "alice", FixedClock(REFRESHED_AT + timedelta(days=3)), settings)  # the warehouse part only
        # bob was forgotten before either snapshot was made, and came back: his later records may be served
        con.execute("insert into deletions values (?, ?, 0, 0, 0, 0, 0)",
                    [REFRESHED_AT, hashlib.sha256(b"bob").hexdigest()])
    finally:
        con.close()
    config = str(settings.base_dir / "selfmodel.yaml")
    refused = CliRunner().invoke(main, ["--config", config, "rollback", first])
    assert refused.exit_code == 2 and "holds 1 user(s) forgotten" in refused.stderr
    assert read_current(settings.snapshots_path) == second

    report = forget(settings, "alice", clock=FixedClock(REFRESHED_AT + timedelta(days=4)))
    rewritten = {change["version"]: change["rewritten_as"] for change in report.snapshots}
    assert CliRunner().invoke(main, ["--config", config, "rollback", rewritten[first]]).exit_code == 0


@pytest.mark.parametrize("user_id", ["", " ", "\u200b", "\t"])
def test_a_blank_user_id_is_refused_and_nothing_is_touched(chat_log, tmp_path, user_id: str) -> None:
    """An unset shell variable (`selfmodel forget "$ID" --yes`) must not match every record's user field."""
    settings, _ = chat_log
    before = quarantined_texts(settings.warehouse_path)
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "forget", user_id, "--yes"])
    assert result.exit_code == 2 and "empty or blank" in result.stderr
    assert quarantined_texts(settings.warehouse_path) == before
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        assert con.execute("select count(*) from deletions").fetchone()[0] == 0
    finally:
        con.close()


def test_a_symlinked_warehouse_is_rewritten_where_it_lives_and_stays_a_link(chat_log, tmp_path) -> None:
    settings, _ = chat_log
    real = tmp_path / "disk" / "warehouse.duckdb"
    real.parent.mkdir()
    settings.warehouse_path.rename(real)
    settings.warehouse_path.symlink_to(real)
    assert real.read_bytes().count(b"love jazz music") > 0
    forget(settings, "alice", clock=FixedClock(T0 + timedelta(days=11)))
    assert settings.warehouse_path.is_symlink() and settings.warehouse_path.resolve() == real
    assert real.read_bytes().count(b"love jazz music") == 0 and real.read_bytes().count(b"cooking pasta") > 0
