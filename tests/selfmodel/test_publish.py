"""Write-audit-publish: what a snapshot holds, what fails an audit (and that the old snapshot stays),
content hashes, pruning, rollback, and the CLI contracts."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from selfmodel.beliefs.read import user_beliefs
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from selfmodel.publish import PublishError, list_snapshots, publish, read_log, rollback
from tests.belief_warehouse import (  # noqa: F401
    REFRESHED_AT, USERS, belief_warehouse, belief_warehouse_template, nightly_owner_and_failing_eval, record_quality)
from warehouse.db import connect
from warehouse.online import CURRENT_FILE, SnapshotError, read_current, verify_snapshot


def publish_with_quality(settings, clock=None, **quality):
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, **quality)
        return publish(settings, con=con, clock=clock)
    finally:
        con.close()


def audits(settings) -> list[dict]:
    con = connect(settings.warehouse_path, read_only=True)
    try:
        cursor = con.execute("select version, passed, published, reason, checks from snapshot_audits order by attempted_at")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def test_a_published_snapshot_holds_every_belief_in_force_decayed_to_the_data_as_of(belief_warehouse) -> None:
    settings = belief_warehouse()
    result = publish_with_quality(settings)
    assert result.published, result.reason
    folder = settings.snapshots_path
    assert read_current(folder) == result.version == result.current
    manifest = verify_snapshot(folder / result.version)
    for field in ("version", "content_hash", "created_at", "data_as_of", "rows", "users", "files", "schema_version",
                  "code_version", "config_hash", "serving_threshold", "audit", "refresh", "key_policies"):
        assert field in manifest, field
    assert manifest["users"] == len(USERS) and manifest["serving_threshold"] == 0.6
    assert manifest["audit"]["passed"] and manifest["audit"]["eval"][0]["passed"]
    assert manifest["audit"]["expectations"]["beliefs"]["blocking_failures"] == 0

    parquet = pq.ParquetFile(folder / result.version / "beliefs.parquet")
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    users = table.column("user_id").to_pylist()
    assert users == sorted(users)

    con = connect(settings.warehouse_path, read_only=True)
    try:
        [(in_force,)] = con.execute("select count(*) from beliefs").fetchall()
        assert table.num_rows == manifest["rows"] == in_force
        for user in USERS:  # the same numbers `selfmodel beliefs USER` shows at the data as-of
            expected = user_beliefs(con, settings, user)["beliefs"]
            rows = [r for r in table.to_pylist() if r["user_id"] == user]
            assert [(r["key"], r["value"]) for r in rows] == [(b["key"], b["value"]) for b in expected]
            for row, belief in zip(rows, expected):
                assert row["confidence"] == pytest.approx(belief["confidence"], rel=1e-12)
                assert row["evidence_count"] == belief["evidence_count"]
    finally:
        con.close()
    assert all(0 <= c < 1 for c in table.column("confidence").to_pylist())


def test_identical_content_gives_identical_content_hashes_whatever_the_time(belief_warehouse) -> None:
    settings = belief_warehouse()
    first = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=1)))
    second = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=2)))
    assert first.published and second.published
    assert first.content_hash == second.content_hash
    assert first.version != second.version and sorted([second.version, first.version]) == [first.version, second.version]
    assert first.version.endswith(first.content_hash[:12])
    folder = settings.snapshots_path
    assert (folder / first.version / "beliefs.parquet").read_bytes() == (folder / second.version / "beliefs.parquet").read_bytes()


def test_a_backfill_that_reaches_the_same_beliefs_publishes_the_same_content_hash(belief_warehouse) -> None:
    """A backfill folds from scratch what refreshes folded step by step: equal to ~1e-15, and equal in the snapshot."""
    from selfmodel.beliefs.backfill import backfill_beliefs
    from tests.belief_warehouse import T0

    settings = belief_warehouse()
    before = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=1)))
    con = connect(settings.warehouse_path)
    try:
        report = backfill_beliefs(con, settings, T0 + timedelta(days=1), T0 + timedelta(days=9), timedelta(days=2))
    finally:
        con.close()
    assert report.caught_up_to is not None  # the beliefs are as of the same time as before
    after = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=2)))
    assert before.published and after.published
    assert after.content_hash == before.content_hash


def test_a_failed_audit_keeps_the_current_snapshot_records_why_and_alerts(belief_warehouse) -> None:
    settings = belief_warehouse()
    good = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=1)))
    assert good.published
    alerts = []
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, eval_passed=False)  # the latest run of the suite fails its bar
        failed = publish(settings, con=con, on_audit_failure=alerts.append,
                         clock=FixedClock(REFRESHED_AT + timedelta(days=2)))
    finally:
        con.close()
    assert not failed.published and failed.current == good.version
    assert "eval" in failed.reason and "labeled failed its bar" in failed.reason
    assert alerts == [failed.reason]
    assert read_current(settings.snapshots_path) == good.version
    assert not (settings.snapshots_path / failed.version).exists()
    recorded = audits(settings)
    assert [(a["passed"], a["published"]) for a in recorded] == [(True, True), (False, False)]
    assert recorded[-1]["reason"] == failed.reason and recorded[-1]["version"] == failed.version
    assert any(not check["passed"] for check in json.loads(recorded[-1]["checks"]))
    assert read_log(settings.snapshots_path)[-1]["action"] == "audit_failed"
    listing = list_snapshots(settings)
    assert listing["current"] == good.version and listing["failed_audits"][0]["reason"] == failed.reason


@pytest.mark.parametrize("case, expected", [
    ("no runs", ["expectations: no expectation validation recorded", "eval: no eval run recorded"]),
    ("blocking", ["expectations: blocking failures in the latest validation of beliefs/beliefs (2)"]),
    ("stale eval", ["eval_fresh: beliefs were refreshed at"]),
    ("required suite", ["required eval suite(s) never ran: predictive"]),
])
def test_what_fails_an_audit(belief_warehouse, case: str, expected: list[str]) -> None:
    settings = belief_warehouse(snapshots={"required_eval_suites": ["predictive"]} if case == "required suite" else {})
    con = connect(settings.warehouse_path)
    try:
        if case == "blocking":
            record_quality(con, blocking=2)
        elif case == "stale eval":
            record_quality(con, at=REFRESHED_AT - timedelta(hours=1))
        elif case == "required suite":
            record_quality(con)
        result = publish(settings, con=con)
    finally:
        con.close()
    assert not result.published
    for text in expected:
        assert text in result.reason
    assert read_current(settings.snapshots_path) is None
    assert not list(settings.snapshots_path.glob("2*"))


def test_a_run_of_some_suites_needs_only_those_fresh_but_every_latest_run_passing(belief_warehouse) -> None:
    settings = belief_warehouse()
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, suite="labeled", at=REFRESHED_AT - timedelta(hours=1))  # before the refresh
        record_quality(con, suite="predictive")  # tonight's `nightly --suite predictive`
        everything = publish(settings, con=con)
        assert not everything.published and "eval_fresh" in everything.reason and "labeled" in everything.reason
        some = publish(settings, con=con, fresh_suites=["predictive"])
        assert some.published, some.reason
        fresh = next(check for check in some.audit.checks if check.name == "eval_fresh")
        assert "labeled not run this time" in fresh.detail
        record_quality(con, suite="labeled", eval_passed=False, at=REFRESHED_AT - timedelta(minutes=30))
        failing = publish(settings, con=con, fresh_suites=["predictive"])
        assert not failing.published and "labeled failed its bar" in failing.reason
    finally:
        con.close()


LLM = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "price_per_1m_input_tokens": 1.0,
       "price_per_1m_output_tokens": 1.0}


@pytest.mark.parametrize("sections, blocks", [
    ({}, False),  # run by hand (`eval --suite enrichment`): it informs, it does not gate
    ({"snapshots": {"required_eval_suites": ["enrichment"]}}, True),
    ({"eval": {"enrichment": {"enabled": True}}, "llm": LLM}, True),  # the nightly runs it: it gates like the others
])
def test_the_enrichment_judge_gates_a_publish_only_when_enabled_or_required(belief_warehouse, sections: dict,
                                                                           blocks: bool) -> None:
    settings = belief_warehouse(**sections)
    con = connect(settings.warehouse_path)
    try:
        record_quality(con)
        record_quality(con, suite="enrichment", eval_passed=False, at=REFRESHED_AT - timedelta(hours=1))
        result = publish(settings, con=con)
    finally:
        con.close()
    assert result.published is not blocks, result.reason
    if blocks:
        assert "suite enrichment failed its bar" in result.reason


def test_a_later_clean_validation_of_the_same_asset_unblocks(belief_warehouse) -> None:
    settings = belief_warehouse()
    con = connect(settings.warehouse_path)
    try:
        record_quality(con, blocking=1)
        assert not publish(settings, con=con).published
        record_quality(con)  # re-validated after the fix: the latest validation decides
        assert publish(settings, con=con).published
    finally:
        con.close()


def test_without_require_eval_the_snapshot_checks_alone_decide(belief_warehouse) -> None:
    settings = belief_warehouse(snapshots={"require_eval": False})
    result = publish(settings)
    assert result.published, result.reason
    assert {c.name for c in result.audit.checks} >= {"checksums", "row_count", "user_count", "confidence_range", "order"}


def test_nothing_to_publish_before_a_refresh(make_settings) -> None:
    settings = make_settings(sources=[], snapshots={"path": "snapshots"}, warehouse={"path": "wh.duckdb", "analyst_copy": None})
    result = publish(settings)
    assert not result.published and "run `selfmodel refresh` first" in result.reason


def test_a_hook_that_raises_does_not_hide_the_failure(belief_warehouse) -> None:
    settings = belief_warehouse()

    def broken(reason: str) -> None:
        raise ConnectionError("webhook down")

    result = publish(settings, on_audit_failure=broken)
    assert not result.published and result.alert_error == "ConnectionError: webhook down"
    assert audits(settings)[-1]["reason"] == result.reason


def test_a_confidence_floor_leaves_weak_beliefs_out(belief_warehouse) -> None:
    settings = belief_warehouse(snapshots={"min_confidence": 0.3})
    result = publish_with_quality(settings)
    assert result.published
    table = pq.read_table(settings.snapshots_path / result.version / "beliefs.parquet")
    assert min(table.column("confidence").to_pylist()) >= 0.3
    assert result.audit.checks[[c.name for c in result.audit.checks].index("row_count")].passed


def test_keep_prunes_old_versions_and_rollback_switches_current(belief_warehouse) -> None:
    settings = belief_warehouse()  # keep: 3
    versions = [publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=d))).version
                for d in range(1, 6)]
    folder = settings.snapshots_path
    assert sorted(p.name for p in folder.glob("2*")) == versions[-3:]
    previous = rollback(settings, versions[-3])
    assert previous == versions[-1] and read_current(folder) == versions[-3]
    assert {k: read_log(folder)[-1][k] for k in ("action", "version", "previous")} == {
        "action": "rolled_back", "version": versions[-3], "previous": versions[-1]}
    newer = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=9))).version
    assert read_current(folder) == newer
    assert sorted(p.name for p in folder.glob("2*")) == [versions[-2], versions[-1], newer]
    assert not any(p.name.startswith(".") and p.name != ".lock" for p in folder.iterdir())  # no staging, no trash
    with pytest.raises(PublishError, match="no snapshot"):
        rollback(settings, versions[0])
    with pytest.raises(PublishError, match="not a snapshot version"):
        rollback(settings, "../etc")


def test_rollback_refuses_a_snapshot_that_fails_verification(belief_warehouse) -> None:
    settings = belief_warehouse()
    old = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=1))).version
    new = publish_with_quality(settings, clock=FixedClock(REFRESHED_AT + timedelta(days=2))).version
    damaged = settings.snapshots_path / old / "beliefs.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(PublishError, match="sha256"):
        rollback(settings, old)
    assert read_current(settings.snapshots_path) == new
    with pytest.raises(SnapshotError):
        verify_snapshot(settings.snapshots_path / old)


def test_cli_publish_lookup_enrich_snapshots_rollback(belief_warehouse) -> None:
    settings = belief_warehouse()
    config = str(settings.base_dir / "selfmodel.yaml")
    runner = CliRunner()

    failed = runner.invoke(main, ["--config", config, "publish", "--json"])
    assert failed.exit_code == 5, failed.output
    payload = json.loads(failed.stdout)  # exactly one JSON object on stdout
    assert set(payload) == {"published", "version", "reason"} and payload["published"] is False
    assert "no eval run recorded" in payload["reason"]

    con = connect(settings.warehouse_path)
    record_quality(con)
    con.close()
    published = runner.invoke(main, ["--config", config, "publish", "--json"])
    assert published.exit_code == 0, published.output
    payload = json.loads(published.stdout)
    assert payload["published"] is True and payload["reason"] is None
    version = payload["version"]

    looked = json.loads(runner.invoke(main, ["--config", config, "lookup", "alice", "--json"]).stdout)
    assert looked["snapshot_version"] == version and not looked["cold_start"] and looked["beliefs"]
    cold = json.loads(runner.invoke(main, ["--config", config, "lookup", "nobody", "--json"]).stdout)
    assert cold["cold_start"] and cold["beliefs"] == []

    enriched = runner.invoke(main, ["--config", config, "enrich", "alice", "What should I listen to?", "--json"])
    assert enriched.exit_code == 0, enriched.output
    payload = json.loads(enriched.stdout)
    assert {"enriched_query", "beliefs_used", "snapshot_version"} <= set(payload)
    assert payload["snapshot_version"] == version and payload["beliefs_used"]
    assert payload["enriched_query"].startswith("About the user") and payload["enriched_query"].endswith("What should I listen to?")
    assert all(b["confidence"] >= 0.6 for b in payload["beliefs_used"])
    passthrough = json.loads(runner.invoke(main, ["--config", config, "enrich", "nobody", "hi", "--json"]).stdout)
    assert passthrough["enriched_query"] == "hi" and passthrough["beliefs_used"] == []
    lower = json.loads(runner.invoke(main, ["--config", config, "enrich", "bob", "hi", "--min-confidence", "0.3", "--json"]).stdout)
    assert lower["beliefs_used"] and all(b["confidence"] >= 0.3 for b in lower["beliefs_used"])

    listing = runner.invoke(main, ["--config", config, "snapshots"])
    assert listing.exit_code == 0 and version in listing.output and "no eval run recorded" in listing.output
    assert json.loads(runner.invoke(main, ["--config", config, "snapshots", "--json"]).stdout)["current"] == version

    unknown = runner.invoke(main, ["--config", config, "rollback", "20000101T000000Z-000000000000"])
    assert unknown.exit_code == 2 and "no snapshot" in unknown.stderr
    again = runner.invoke(main, ["--config", config, "rollback", version])
    assert again.exit_code == 0 and (settings.snapshots_path / CURRENT_FILE).read_text().strip() == version


def test_cli_publish_refused_alerts_the_nightly_owners_once_per_incident(belief_warehouse, webhook) -> None:
    _, config = nightly_owner_and_failing_eval(belief_warehouse, webhook.url)
    for _ in range(2):
        result = CliRunner().invoke(main, ["--config", config, "publish", "--json"])
        assert result.exit_code == 5
        assert set(json.loads(result.stdout)) >= {"published", "version", "reason"}
    [alert] = webhook.accepted()
    assert "snapshot_published" in str(alert) and "selfmodel publish" in str(alert)


def test_cli_lookup_before_anything_is_published_says_so(belief_warehouse) -> None:
    settings = belief_warehouse()
    result = CliRunner().invoke(main, ["--config", str(settings.base_dir / "selfmodel.yaml"), "lookup", "alice"])
    assert result.exit_code == 1 and "run `selfmodel publish`" in result.stderr


def test_snapshot_settings_are_checked_and_overridable(tmp_path) -> None:
    from selfmodel.settings import ConfigError, load_settings

    config = tmp_path / "selfmodel.yaml"
    config.write_text("snapshots: {keep: 1}\n")
    with pytest.raises(ConfigError, match="snapshots.keep"):
        load_settings(config, environ={})
    config.write_text("snapshots: {path: snaps}\n")
    settings = load_settings(config, environ={"SELFMODEL__SNAPSHOTS__REQUIRE_EVAL": "false"})
    assert settings.snapshots_path == tmp_path / "snaps" and settings.snapshots.require_eval is False
    assert load_settings(config, environ={}).snapshots.keep == 7


def test_cli_publish_refused_with_an_unset_owner_webhook_says_so_in_lines_not_a_traceback(belief_warehouse) -> None:
    import subprocess
    import sys

    settings, config = nightly_owner_and_failing_eval(belief_warehouse, "http://127.0.0.1:9/unused")
    text = Path(config).read_text().replace("webhook: http://127.0.0.1:9/unused", "webhook_env: SELFMODEL_TEST_UNSET_HOOK")
    Path(config).write_text(text)
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", config, "publish"],
                            capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                                             if k != "SELFMODEL_TEST_UNSET_HOOK"})
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "nightly owners could not be told" in result.stderr and "SELFMODEL_TEST_UNSET_HOOK" in result.stderr


def test_a_rollback_never_puts_in_force_a_calibration_this_warehouse_did_not_record(belief_warehouse) -> None:
    """A snapshot kept from a warehouse since rebuilt names a calibration this one never fitted: putting it in
    force would leave every later refresh without parameters. The rollback says so and changes nothing else."""
    from selfmodel.beliefs.parameters import adopted_calibration
    from selfmodel.beliefs.refresh import refresh_beliefs
    from selfmodel.publish import restore_calibration

    settings = belief_warehouse()
    with pytest.raises(PublishError, match="cal-of-another-warehouse.*not recorded in this warehouse"):
        restore_calibration(settings, "v1", {"calibration_id": "cal-of-another-warehouse"},
                            FixedClock(REFRESHED_AT))
    con = connect(settings.warehouse_path)
    try:
        assert adopted_calibration(con) == (None, {})
        assert refresh_beliefs(con, settings, as_of=REFRESHED_AT).calibration_id is None
    finally:
        con.close()


def test_the_served_file_is_checksummed_beside_the_content_hash_never_inside_it(tmp_path: Path) -> None:
    import blake3
    import pyarrow as pa

    from selfmodel.publish.folder import _served_differs, _sha, stage_snapshot
    from warehouse.online import BELIEFS_SCHEMA

    at = REFRESHED_AT
    table = pa.table({
        "user_id": ["ana", "ana", "ben"], "key": ["role", "topic", "language"], "value": ["nurse", "chess", "de"],
        "confidence": [0.9, 0.7, 0.8], "evidence_count": [4, 2, 3], "decayed_evidence": [3.5, 1.5, 2.5],
        "first_seen": [at - timedelta(days=9)] * 3, "last_evidence_at": [at - timedelta(days=d) for d in (1, 2, 3)],
    }).cast(BELIEFS_SCHEMA)
    staged, manifest = stage_snapshot(tmp_path / "a", table, data_as_of=at, created=at, serving_threshold=0.6)
    # The content hash is over what the snapshot holds (the beliefs file among it), as before beliefs.arrow:
    # so publishing the same beliefs gives the same content hash and version as then.
    content = {key: manifest[key] for key in ("schema_version", "data_as_of", "serving_threshold", "min_confidence",
                                              "rows", "users", "files")}
    assert manifest["content_hash"] == _sha(content) and list(manifest["files"]) == ["beliefs.parquet"]
    served = (staged / "beliefs.arrow").read_bytes()
    assert manifest["served_files"] == {"beliefs.arrow": {"blake3": blake3.blake3(served).hexdigest(),
                                                          "bytes": len(served), "rows": 3}}
    again, manifest_again = stage_snapshot(tmp_path / "b", table, data_as_of=at, created=at, serving_threshold=0.6)
    assert (again / "beliefs.arrow").read_bytes() == served and manifest_again == manifest  # derived, deterministic

    assert _served_differs(staged / "beliefs.arrow", table) is None
    other = table.set_column(2, "value", pa.array(["nurse", "chess", "fr"]))
    assert _served_differs(staged / "beliefs.arrow", other) == "column value"
