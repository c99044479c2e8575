"""Data-quality expectations: the suite files, good data passing, crafted bad rows failing the right
expectation at the right severity, crashes counting as failures, storage, HTML, incremental runs, the
CLI contract, and the bundled real sample."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.quality import blocking_failures, load_suites, raised_exception, validate
from selfmodel.settings import load_settings
from warehouse.db import connect

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITES = REPO_ROOT / "expectations"
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
INGESTED = FixedClock(datetime(2024, 6, 1, tzinfo=timezone.utc))


def at(day: int, hour: int = 12) -> str:
    return (T0 + timedelta(days=day, hours=hour)).isoformat()


GOOD_EVENTS = [
    {"event_id": "m1", "user_id": "u1", "occurred_at": at(0), "kind": "message",
     "text": "I'm a nurse and I keep reading about quantum computing in my spare time.", "tags": ["quantum"]},
    {"event_id": "r1", "user_id": "u1", "occurred_at": at(0, 13), "kind": "response", "reply_to": "m1",
     "text": "Quantum computers use qubits, which can be in superposition."},
    {"event_id": "f1", "user_id": "u1", "occurred_at": at(0, 14), "kind": "feedback", "reply_to": "r1", "rating": 1},
    {"event_id": "m2", "user_id": "u1", "occurred_at": at(3), "kind": "message",
     "text": "How do I write a simple quantum circuit in Python? I have two dogs and they watch me code.",
     "tags": ["quantum", "python"]},
    {"event_id": "m3", "user_id": "u2", "occurred_at": at(5), "kind": "message",
     "text": "Can you recommend a good recipe for a vegetarian lasagna for my family dinner tonight?"},
    {"event_id": "r3", "user_id": "u2", "occurred_at": at(5, 13), "kind": "response", "reply_to": "m3",
     "text": "Layer pasta, ricotta, spinach and tomato sauce, then bake for 45 minutes."},
    {"event_id": "f3", "user_id": "u2", "occurred_at": at(5, 14), "kind": "feedback", "reply_to": "r3", "rating": -1},
]


def write_jsonl(path: Path, records: list, mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def config_for(folder: Path, *sources: dict, **sections) -> Path:
    config = {"warehouse": {"path": "wh.duckdb"}, "quality": {"path": str(SUITES)},
              "sources": [{"name": "app", "format": "jsonl", "path": "events.jsonl"}, *sources], **sections}
    path = folder / "selfmodel.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A tiny warehouse (one ingested batch, refreshed), built once and copied by each test."""
    folder = tmp_path_factory.mktemp("template")
    write_jsonl(folder / "events.jsonl", GOOD_EVENTS)
    settings = load_settings(config_for(folder), environ={})
    [report] = ingest(settings, clock=INGESTED)
    assert (report.status, report.loaded) == ("committed", len(GOOD_EVENTS))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings, clock=INGESTED)
    finally:
        con.close()
    return folder


@pytest.fixture
def tiny(template: Path, tmp_path: Path):
    """(settings, connection) on a fresh copy of the template warehouse."""
    for name in ("events.jsonl", "wh.duckdb"):
        shutil.copy2(template / name, tmp_path / name)  # copy2 keeps mtimes: the file counts as unchanged

    def settings_with(*sources, **sections):
        return load_settings(config_for(tmp_path, *sources, **sections), environ={})

    settings = settings_with()
    con = connect(settings.warehouse_path)
    yield settings, con, settings_with
    con.close()


def clock(day: int) -> FixedClock:
    """Validation times after the data, one per call, so "latest" is well defined."""
    return FixedClock(datetime(2024, 6, 2, tzinfo=timezone.utc) + timedelta(days=day))


def failures(report) -> dict[str, tuple[str, int | None]]:
    return {o.expectation: (o.severity, o.unexpected_count) for o in report.failures()}


def by_suite(reports) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for report in reports:
        grouped.setdefault(report.suite, []).append(report)
    return grouped


def raw_suite(name: str) -> dict:
    return json.loads((SUITES / f"{name}.json").read_text())


# -- the suite files ----------------------------------------------------------------------------------

def test_every_suite_file_is_a_gx_suite_and_states_each_severity(tiny) -> None:
    from great_expectations.core import ExpectationSuite

    settings, _, _ = tiny
    specs = {spec.name: spec for spec in load_suites(settings)}
    assert {"events_batch", "quarantine_rate", "beliefs", "eval_inputs"} <= set(specs)
    for spec in specs.values():
        assert ExpectationSuite(**spec.raw).name == spec.name  # loads back into GX unchanged
        assert all("severity" in e for e in spec.raw["expectations"])  # explicit, not GX's default
        assert set(spec.severities) <= {"block", "warn"} and "block" in spec.severities
        assert (REPO_ROOT / "warehouse" / "queries" / f"{spec.query}.sql").exists()
    assert specs["events_batch"].incremental == specs["quarantine_rate"].incremental == "batch"
    assert specs["beliefs"].incremental is None and specs["eval_inputs"].incremental is None


def test_a_suite_without_an_explicit_severity_is_refused(tiny, tmp_path: Path) -> None:
    from selfmodel.quality import QualityError

    settings, _, settings_with = tiny
    folder = tmp_path / "suites"
    folder.mkdir()
    raw = raw_suite("beliefs")
    del raw["expectations"][0]["severity"]  # GX would silently default to critical
    (folder / "beliefs.json").write_text(json.dumps(raw))
    with pytest.raises(QualityError, match="must state its severity"):
        load_suites(settings_with(quality={"path": str(folder)}))


# -- good data, storage, HTML -------------------------------------------------------------------------

def test_good_data_passes_every_suite_and_every_validation_is_stored_with_its_page(tiny) -> None:
    settings, con, _ = tiny
    reports = validate(con, settings, clock=clock(0))

    grouped = by_suite(reports)
    assert sorted(grouped) == ["beliefs", "eval_inputs", "events_batch", "quarantine_rate"]
    assert all(len(group) == 1 for group in grouped.values())
    for report in reports:
        assert report.success, (report.suite, failures(report))
        assert len(report.outcomes) == len(raw_suite(report.suite)["expectations"])
    [batch_id] = [row[0] for row in con.execute("select batch_id from ingest_batches").fetchall()]
    assert grouped["events_batch"][0].asset == batch_id and grouped["events_batch"][0].rows == len(GOOD_EVENTS)
    assert grouped["quarantine_rate"][0].asset == "app"  # a source's latest batch decides its health
    assert grouped["beliefs"][0].rows > 0 and grouped["eval_inputs"][0].rows > 0

    runs = con.execute("select validation_id, suite, success, blocking_failures, warnings, evaluated, data_docs, "
                       "batch_id from expectation_runs order by suite").fetchall()
    assert [(r[1], r[2], r[3], r[4]) for r in runs] == [
        (suite, True, 0, 0) for suite in ("beliefs", "eval_inputs", "events_batch", "quarantine_rate")]
    assert [r[7] for r in runs] == [None, None, batch_id, batch_id]
    for validation_id, suite, _, _, _, evaluated, page, _ in runs:
        stored = con.execute("select count(*), count(*) filter (where success), count(distinct severity) "
                             "from expectation_results where validation_id = ?", [validation_id]).fetchone()
        assert stored == (evaluated, evaluated, 2)
        assert Path(page).is_file() and "Expectation Validation Result" in Path(page).read_text()
    index = (settings.warehouse_path.parent / "data_docs" / "index.html").read_text()
    assert all(Path(r[6]).name in index for r in runs)
    assert blocking_failures(con) == []


# -- crafted bad data ---------------------------------------------------------------------------------

def test_a_belief_with_confidence_above_one_fails_the_confidence_expectation_at_block(tiny) -> None:
    settings, con, _ = tiny
    [(as_of,)] = con.execute("select max(as_of) from beliefs").fetchall()
    # A key family the refresh's parameters do not know (dropped from the config): the `beliefs` view cannot
    # compute its confidence and shows the stored one, which nothing else then checks.
    con.execute("insert into belief_history values ('u9', 'mystery', 'cooking', 1.5, 3, 2.0, ?, ?, ?, null)",
                [as_of - timedelta(days=2), as_of - timedelta(days=1), as_of]).fetchall()

    [report] = validate(con, settings, suites=["beliefs"], clock=clock(0))

    # (the unknown family is a blocking failure of its own)
    assert failures(report) == {"expect_column_values_to_be_between(confidence)": ("block", 1),
                                "expect_column_values_to_be_in_set(key_family)": ("block", 1)}
    assert (report.success, report.blocking_failures, report.warnings) == (False, 2, 0)
    [failure] = [f for f in blocking_failures(con) if f["expectation"].endswith("(confidence)")]
    assert (failure["suite"], failure["asset"], failure["expectation"], failure["unexpected_count"]) == (
        "beliefs", "beliefs", "expect_column_values_to_be_between(confidence)", 1)
    assert failure["details"]["partial_unexpected_list"] == [1.5]
    assert con.execute("select severity, unexpected_count from expectation_results where not success").fetchall() == [
        ("block", 1)] * 2


def insert_batch(con, batch_id: str, events: list[dict]) -> None:
    """A committed batch written straight into the tables, bypassing ingestion's own checks."""
    con.execute("insert into ingest_batches values (?, 'app', 'jsonl', 'committed', ?, ?, ?, ?, 0, 0, 0, 0, "
                "'[]', null, null, 'test', ?)",
                [batch_id, INGESTED.now(), INGESTED.now(), len(events), len(events), len(events)]).fetchall()
    for n, event in enumerate(events):
        con.execute(
            "insert into events values (?, ?, ?, ?, ?, null, ?, ?, [], 'app', ?, '{}', ?, false, ?)",
            [event["event_id"], event["user_id"], event["occurred_at"], event["kind"], event.get("text"),
             event.get("reply_to"), event.get("rating"), batch_id, f"hash{n}", INGESTED.now()],
        ).fetchall()


def test_bad_rows_in_a_batch_fail_the_matching_events_batch_expectations(tiny) -> None:
    settings, con, _ = tiny
    validate(con, settings, suites=["events_batch"], clock=clock(0))  # the good batch
    future = datetime(2100, 1, 1, tzinfo=timezone.utc)
    insert_batch(con, "b-bad", [
        {"event_id": "x1", "user_id": "u1", "occurred_at": T0, "kind": "message", "text": "fine"},
        {"event_id": "x2", "user_id": "u1", "occurred_at": T0, "kind": "bogus", "text": "odd kind"},
        {"event_id": "x3", "user_id": "u1", "occurred_at": future, "kind": "message", "text": "from the future"},
        {"event_id": "x4", "user_id": "u1", "occurred_at": T0, "kind": "message", "text": "  \n "},
        {"event_id": "x5", "user_id": "u1", "occurred_at": T0, "kind": "feedback", "rating": float("nan")},
        {"event_id": "m1", "user_id": "u1", "occurred_at": T0, "kind": "message", "text": "m1 again"},
        {"event_id": "x7", "user_id": "  ", "occurred_at": T0, "kind": "message", "text": "who?"},
        {"event_id": "x8", "user_id": "u1", "occurred_at": T0, "kind": "response", "text": "hi", "reply_to": "nope"},
    ])

    [report] = validate(con, settings, suites=["events_batch"], clock=clock(1))

    assert report.asset == "b-bad" and report.rows == 8
    assert failures(report) == {
        "expect_column_values_to_be_in_set(kind)": ("block", 1),
        "expect_column_values_to_be_between(occurred_at)": ("block", 1),
        'expect_column_values_to_match_regex(text) if kind IN ["message", "response"]': ("block", 1),
        "expect_column_values_to_be_in_set(rating_is_finite)": ("block", 1),
        "expect_column_values_to_be_between(copies_in_source)": ("block", 1),
        "expect_column_values_to_match_regex(user_id)": ("block", 1),
        "expect_column_values_to_be_in_set(reply_to_found)": ("warn", 1),
        # NaN reads as missing, and it is the batch's only feedback.
        'expect_column_values_to_not_be_null(rating) if kind == "feedback"': ("warn", 1),
    }
    assert {(f["asset"], f["expectation"]) for f in blocking_failures(con)} == {
        ("b-bad", label) for label, (severity, _) in failures(report).items() if severity == "block"}


def test_a_batch_quarantining_60_percent_blocks_until_the_source_loads_a_healthy_batch(tiny) -> None:
    settings, con, settings_with = tiny
    settings = settings_with({"name": "flaky", "format": "jsonl", "path": "flaky.jsonl"})
    folder = settings.base_dir
    good = [{**event, "event_id": f"flaky-{n}"} for n, event in enumerate(GOOD_EVENTS[:4])]
    write_jsonl(folder / "flaky.jsonl", [*good, *["{not json"] * 6])
    con.close()
    [bad_batch] = ingest(settings, "flaky", clock=INGESTED)
    con = connect(settings.warehouse_path)
    try:
        assert (bad_batch.rows_read, bad_batch.quarantined) == (10, 6)
        reports = by_suite(validate(con, settings, suites=["quarantine_rate"], clock=clock(0)))["quarantine_rate"]
        flaky = next(r for r in reports if r.asset == "flaky")
        # Both the 5 % warning and the 50 % block on quarantine_rate fail, once each (one row per batch).
        assert sorted((o.severity, o.unexpected_count) for o in flaky.failures()) == [("block", 1), ("warn", 1)]
        assert [(f["suite"], f["asset"], f["batch_id"]) for f in blocking_failures(con)] == [
            ("quarantine_rate", "flaky", bad_batch.batch_id)]

        # The source's next batch quarantines 1 in 10: a warning only, and the block is over.
        write_jsonl(folder / "flaky.jsonl", [{**GOOD_EVENTS[0], "event_id": f"later-{n}"} for n in range(9)]
                    + ["[1, 2]"], mode="a")
        con.close()
        [next_batch] = ingest(settings, "flaky", clock=FixedClock(INGESTED.now() + timedelta(hours=1)))
        con = connect(settings.warehouse_path)
        assert (next_batch.rows_read, next_batch.quarantined) == (10, 1)
        [report] = validate(con, settings, suites=["quarantine_rate"], clock=clock(1))
        assert report.batch_id == next_batch.batch_id
        assert failures(report) == {"expect_column_values_to_be_between(quarantine_rate)": ("warn", 1)}
        assert blocking_failures(con) == []
    finally:
        con.close()


def test_a_crashed_expectation_counts_as_failed_never_as_passed(tiny, tmp_path: Path) -> None:
    settings, con, settings_with = tiny
    folder = tmp_path / "suites"
    folder.mkdir()
    raw = raw_suite("beliefs")
    raw["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such_column"},
                                "meta": {}, "severity": "critical"})
    (folder / "beliefs.json").write_text(json.dumps(raw))

    [report] = validate(con, settings_with(quality={"path": str(folder)}), clock=clock(0))

    crashed = next(o for o in report.outcomes if o.expectation == "expect_column_values_to_not_be_null(no_such_column)")
    assert (crashed.success, crashed.severity, crashed.unexpected_count) == (False, "block", None)
    assert "no_such_column" in crashed.details["exception"]
    assert (report.success, report.blocking_failures) == (False, 1)
    [failure] = blocking_failures(con)
    assert failure["expectation"] == crashed.expectation and failure["unexpected_count"] is None
    assert "no_such_column" in Path(report.data_docs).read_text()


def test_raised_exception_reads_both_shapes_gx_reports() -> None:
    flat = {"raised_exception": True, "exception_message": "boom", "exception_traceback": "..."}
    per_metric = {"MetricConfigurationID(a)": {"raised_exception": True, "exception_message": "bad column"}}
    assert raised_exception(flat) == "boom"
    assert raised_exception(per_metric) == "bad column"
    assert raised_exception({"raised_exception": False, "exception_message": None}) is None
    assert raised_exception({}) is None


# -- incremental --------------------------------------------------------------------------------------

def test_batches_are_validated_once_unless_a_batch_is_named_again(tiny) -> None:
    settings, con, _ = tiny
    per_batch = ["events_batch", "quarantine_rate"]
    first = validate(con, settings, suites=per_batch, clock=clock(0))
    [first_batch] = {r.batch_id for r in first}
    assert sorted(r.suite for r in first) == per_batch

    assert validate(con, settings, suites=per_batch, clock=clock(1)) == []  # nothing new

    write_jsonl(settings.base_dir / "events.jsonl",
                [{**GOOD_EVENTS[3], "event_id": "m4", "occurred_at": at(9)}], mode="a")
    con.close()
    [new_batch] = ingest(settings, clock=FixedClock(INGESTED.now() + timedelta(days=1)))
    con = connect(settings.warehouse_path)
    try:
        third = validate(con, settings, suites=per_batch, clock=clock(2))
        assert sorted((r.suite, r.batch_id, r.rows) for r in third) == [
            ("events_batch", new_batch.batch_id, 1), ("quarantine_rate", new_batch.batch_id, 1)]

        again = validate(con, settings, suites=["events_batch"], batch_ids=[first_batch], clock=clock(3))
        assert [(r.suite, r.batch_id, r.success) for r in again] == [("events_batch", first_batch, True)]
        assert con.execute("select batch_id, count(*) from expectation_runs where suite = 'events_batch' "
                           "group by all order by 1").fetchall() == sorted([(first_batch, 2), (new_batch.batch_id, 1)])
    finally:
        con.close()


# -- command line -------------------------------------------------------------------------------------

def test_cli_prints_one_json_object_and_exits_4_only_on_a_blocking_failure(tiny) -> None:
    settings, con, _ = tiny
    config = str(settings.base_dir / "selfmodel.yaml")
    con.close()  # the CLI opens the warehouse itself

    ok = CliRunner().invoke(main, ["--config", config, "expectations", "--json", "--suite", "beliefs"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)  # fails if anything else shares stdout
    assert set(payload) == {"validations", "blocking", "data_docs"} and payload["blocking"] == []
    [validation] = payload["validations"]
    assert (validation["suite"], validation["success"], validation["failures"]) == ("beliefs", True, [])
    assert Path(validation["data_docs"]).is_file() and Path(payload["data_docs"]).is_file()

    with duckdb.connect(str(settings.warehouse_path)) as writer:  # a warning-level failure only
        writer.execute("delete from belief_history")
        writer.execute("delete from observations")
    warned = CliRunner().invoke(main, ["--config", config, "expectations", "--suite", "beliefs", "--json"])
    assert warned.exit_code == 0, warned.output
    [validation] = json.loads(warned.stdout)["validations"]
    assert [f["severity"] for f in validation["failures"]] == ["warn"]  # no beliefs at all

    with duckdb.connect(str(settings.warehouse_path)) as writer:
        writer.execute("insert into belief_history values ('u9', 'mystery', 'x', 1.5, 1, 1.0, "
                       "'2024-05-01', '2024-05-01', '2024-05-02', null)")
    blocked = CliRunner().invoke(main, ["--config", config, "expectations", "--suite", "beliefs"])
    assert blocked.exit_code == 4, blocked.output
    assert "BLOCKING beliefs on beliefs: expect_column_values_to_be_between(confidence)" in blocked.stdout

    unknown = CliRunner().invoke(main, ["--config", config, "expectations", "--suite", "nope"])
    assert unknown.exit_code == 2 and "unknown suite" in unknown.stderr and "Traceback" not in unknown.output


# -- real data ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_bundled_real_sample_passes_every_block_expectation(qc_sample: Path, make_settings) -> None:
    settings = make_settings([{"name": "qc", "format": "stackexchange", "path": str(qc_sample)}],
                             quality={"path": str(SUITES)})
    [batch] = ingest(settings, clock=FixedClock(datetime(2024, 1, 1, tzinfo=timezone.utc)))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings)
        reports = validate(con, settings, clock=FixedClock(datetime(2024, 1, 2, tzinfo=timezone.utc)))
        assert sorted(r.suite for r in reports) == ["beliefs", "eval_inputs", "events_batch", "quarantine_rate"]
        assert {r.suite: r.rows for r in reports}["events_batch"] == batch.loaded
        blocking = {(r.suite, o.expectation): o.unexpected_count for r in reports for o in r.failures()
                    if o.severity == "block"}
        assert blocking == {}
        assert blocking_failures(con) == []
        # Today the sample passes the warnings too (4.1 % quarantined, under the 5 % warning).
        assert {(r.suite, o.expectation) for r in reports for o in r.failures()} == set()
    finally:
        con.close()
