"""`selfmodel calibrate` on the bundled real sample: it fits on windows before the evaluation's and never
reads them, records and adopts per family, and what it adopts is what the next refresh and snapshot use."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from selfmodel import calibrate as calibration
from selfmodel.beliefs import parameters
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.cli import main
from selfmodel.ingest import ingest
from selfmodel.publish import restore_calibration
from selfmodel.clock import SystemClock
from selfmodel.settings import load_settings
from warehouse.db import connect

CONFIG = "warehouse: {path: warehouse.duckdb, analyst_copy: null}\nsources:\n  - {name: qc, format: stackexchange, path: %s}\n"


@pytest.fixture(scope="module")
def qc_template(tmp_path_factory: pytest.TempPathFactory, request) -> Path:
    from tests.conftest import QC_SAMPLE

    folder = tmp_path_factory.mktemp("qc-calibrate")
    (folder / "selfmodel.yaml").write_text(CONFIG % QC_SAMPLE)
    settings = load_settings(folder / "selfmodel.yaml", environ={})
    ingest(settings)
    con = connect(settings.warehouse_path)
    refresh_beliefs(con, settings)
    con.close()
    return folder


@pytest.fixture
def qc(qc_template: Path, tmp_path: Path):
    shutil.copy(qc_template / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    shutil.copy(qc_template / "selfmodel.yaml", tmp_path / "selfmodel.yaml")
    return load_settings(tmp_path / "selfmodel.yaml", environ={})


def cli(settings, *args):
    return CliRunner().invoke(main, ["--config", str(settings.base_dir / "selfmodel.yaml"), *args])


def table_counts(settings) -> tuple[int, int]:
    con = connect(settings.warehouse_path, read_only=True)
    try:
        return (con.execute("select count(*) from calibration_runs").fetchone()[0],
                con.execute("select count(*) from calibration_adoptions").fetchone()[0])
    finally:
        con.close()


def test_a_dry_run_fits_every_family_with_enough_judgements_and_writes_nothing(qc) -> None:
    result = cli(qc, "calibrate", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert table_counts(qc) == (0, 0)
    families = {f["family"]: f for f in report["families"]}
    evaluation_from = report["evaluation_from"]
    assert all(w["horizon_end"] <= evaluation_from for w in report["windows"])
    assert {w["split"] for w in report["windows"]} == {"train", "validation"}
    for family in ("expertise", "topic"):  # thousands of judgements on this sample
        assert families[family]["status"] in ("adopted", "not_better")
        assert families[family]["fitted"]["half_life_days"] > 0
    assert families["fact"]["status"] == "too_small" and families["fact"]["fitted"] is None
    topic = families["topic"]
    # the fit is checked on the later windows, and on this sample it helps there
    assert topic["validation_log_loss_after"] < topic["validation_log_loss_before"]
    assert topic["validation_ece_after"] < topic["validation_ece_before"]
    kinds = families["expertise"]["fitted"]["kind_weights"]
    assert {"expertise:accept", "expertise:upvote", "expertise:answered"} <= set(kinds)


def test_the_fit_never_reads_the_evaluation_s_windows(qc, monkeypatch) -> None:
    con = connect(qc.warehouse_path)
    try:
        before = calibration.calibrate(con, qc, dry_run=True)
        # What happens in the evaluation's windows cannot change the fit: drop every observation there.
        con.execute("delete from observations where observed_at > ?", [before.evaluation_from]).fetchall()
        after = calibration.calibrate(con, qc, dry_run=True)
        assert [f.fitted for f in after.families] == [f.fitted for f in before.families]
        assert [f.validation_log_loss_after for f in after.families] == \
            [f.validation_log_loss_after for f in before.families]

        # A plan that reaches into them (a planted leak) is refused before anything is read.
        planned = calibration.plan_windows

        def leaky(data_end, data_start, settings):
            plan = planned(data_end, data_start, settings)
            last = plan.windows[-1]
            leak = calibration.Window(last.cutoff + timedelta(days=7), last.horizon_end + timedelta(days=7), "validation")
            return replace(plan, windows=plan.windows + (leak,))

        monkeypatch.setattr(calibration, "plan_windows", leaky)
        with pytest.raises(calibration.CalibrationLeak, match="after the evaluation's earliest cutoff"):
            calibration.calibrate(con, qc)
        assert con.execute("select count(*) from calibration_runs").fetchone()[0] == 0
    finally:
        con.close()


def test_an_adopted_calibration_is_used_by_the_next_refresh_and_rolled_back_with_a_snapshot(qc) -> None:
    result = cli(qc, "calibrate")
    assert result.exit_code == 0, result.output
    assert "adopted as cal-" in result.stdout
    con = connect(qc.warehouse_path)
    try:
        calibration_id, fitted = parameters.adopted_calibration(con)
        assert calibration_id and {"expertise", "topic"} <= set(fitted)
        report = refresh_beliefs(con, qc)
        assert report.refolded and report.calibration_id == calibration_id
        in_force = parameters.of_last_refresh(con)
        assert in_force.calibration_id == calibration_id
        assert in_force.policies["topic"] == fitted["topic"]
    finally:
        con.close()
    # A snapshot made before the calibration says it used none: rolling back to it puts none back in force.
    assert restore_calibration(qc, "v-before", {"calibration_id": None}, SystemClock()) == "config"
    con = connect(qc.warehouse_path)
    try:
        assert parameters.adopted_calibration(con) == (None, {})
        assert refresh_beliefs(con, qc).refolded
        assert parameters.of_last_refresh(con).calibration_id is None
    finally:
        con.close()
    # A snapshot from before calibrations were recorded changes nothing.
    assert restore_calibration(qc, "v-old", {}, SystemClock()) is None


def test_calibrate_as_of_sees_only_events_up_to_then(qc) -> None:
    full = json.loads(cli(qc, "calibrate", "--dry-run", "--json").stdout)
    earlier = json.loads(cli(qc, "calibrate", "--dry-run", "--json", "--as-of", "2018-07-15T00:00:00Z").stdout)
    assert earlier["data_end"] <= "2018-07-15T00:00:00+00:00" < full["data_end"]
    assert earlier["evaluation_from"] < full["evaluation_from"]
    assert cli(qc, "calibrate", "--as-of", "2999-01-01T00:00:00Z").exit_code == 2  # the future is a typo


def test_an_excluded_family_is_never_fitted_and_keeps_the_config_s_values(qc) -> None:
    assert cli(qc, "calibrate").exit_code == 0  # topic fitted and adopted
    (qc.base_dir / "selfmodel.yaml").write_text(
        (qc.base_dir / "selfmodel.yaml").read_text() + "calibration: {exclude: [topic]}\n")
    excluding = load_settings(qc.base_dir / "selfmodel.yaml", environ={})
    con = connect(qc.warehouse_path)
    try:
        assert parameters.adopted_calibration(con)[1]["topic"] != parameters.configured(qc).policies["topic"]
        assert parameters.in_force(con, excluding).policies["topic"] == parameters.configured(qc).policies["topic"]
        report = calibration.calibrate(con, excluding, dry_run=True)
    finally:
        con.close()
    assert {f.family: f.status for f in report.families}["topic"] == "excluded"
    (qc.base_dir / "selfmodel.yaml").write_text(
        (qc.base_dir / "selfmodel.yaml").read_text().replace("[topic]", "[topics]"))
    refused = cli(qc, "calibrate", "--dry-run")
    assert refused.exit_code == 2 and "calibration.exclude names unknown key families ['topics']" in refused.output


def test_the_table_says_what_was_fitted_and_a_dry_run_says_it_wrote_nothing(qc) -> None:
    result = cli(qc, "calibrate", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "the evaluation's windows start" in lines[0] and "were not read" in lines[0]
    topic = lines.index(next(line for line in lines if line.startswith("topic ")))
    assert lines[topic + 1].split() == ["before", "half-life", "30", "d,", "prior", "4,", "repeat", "discount", "1.00,",
                                        "map", "identity"]  # the config's values
    assert lines[topic + 2].split()[0] == "fitted" and lines[topic + 3].split()[:2] == ["kinds", "topic:keyword"]
    assert lines[-1] == "dry run: nothing written"
    assert table_counts(qc) == (0, 0)


@pytest.mark.parametrize("sections", [
    {"calibration": {"every_days": 1e308}},
    {"eval": {"predictive": {"backtest_every_days": 1e308}}},
    {"eval": {"predictive": {"backtest_cutoffs": 100_000}}},
])
def test_windows_the_calendar_cannot_hold_are_left_out_not_a_traceback(make_settings, sections: dict) -> None:
    from datetime import datetime, timezone

    settings = make_settings([], **sections)
    end, start = datetime(2018, 9, 2, tzinfo=timezone.utc), datetime(2018, 3, 12, tzinfo=timezone.utc)
    plan = calibration.plan_windows(end, start, settings)
    calibration.refuse_leaks(plan)
    assert all(start < w.cutoff and w.horizon_end <= plan.evaluation_from for w in plan.windows)
