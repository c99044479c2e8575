"""Option values out of range are usage errors (exit 2, one error line, no traceback, nothing written), and
an as-of in the future is refused by every command that takes one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.cli import main
from selfmodel.clock import FixedClock
from tests.belief_warehouse import belief_warehouse, belief_warehouse_template, record_quality  # noqa: F401
from warehouse.db import connect

FAR_FUTURE = "9999-01-01T00:00:00Z"
RANGE = ["--from", "2024-01-02", "--to", "2024-01-03"]


@pytest.fixture
def published(belief_warehouse) -> str:
    """The config of the small belief warehouse, with a published snapshot."""
    settings = belief_warehouse()
    con = connect(settings.warehouse_path)
    try:
        record_quality(con)
    finally:
        con.close()
    config = str(settings.base_dir / "selfmodel.yaml")
    assert CliRunner().invoke(main, ["--config", config, "publish"]).exit_code == 0
    return config


def tables(config: str) -> dict[str, list[tuple]]:
    """Everything a writing command could have changed."""
    from selfmodel.settings import load_settings

    con = connect(load_settings(config, environ={}).warehouse_path, read_only=True)
    try:
        return {table: con.execute(f"select * from {table} order by all").fetchall()
                for table in ("refresh_runs", "belief_history", "observations", "eval_runs", "ingest_batches")}
    finally:
        con.close()


def assert_usage_error(result, *named: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a traceback
    errors = [line for line in result.stderr.splitlines() if line.startswith(("Error: ", "error: "))]
    assert len(errors) == 1, result.stderr
    for text in named:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("args, named", [
    pytest.param(["quarantine", "--limit", "-1"], "'--limit': -1 is not in the range 0<=x<=1000000",
                 id="limit-negative"),
    pytest.param(["quarantine", "--limit", "99999999999999999999"], "'--limit'", id="limit-above-bigint"),
    pytest.param(["quarantine", "--json", "--limit", "1000001"], "'--limit'", id="limit-above-the-bound"),
    pytest.param(["backfill", *RANGE, "--every", "1e308"], "'--every'", id="every-huge"),
    pytest.param(["backfill", *RANGE, "--every", "inf"], "'--every'", id="every-inf"),
    pytest.param(["backfill", *RANGE, "--every", "nan"], "'--every': 'nan' is not a number", id="every-nan"),
    pytest.param(["backfill", *RANGE, "--every", "0"], "'--every'", id="every-zero"),
    pytest.param(["enrich", "alice", "hi", "--max-beliefs", "99999999999999999999"], "'--max-beliefs'",
                 id="max-beliefs-huge"),
    pytest.param(["enrich", "alice", "hi", "--max-beliefs", "0"], "'--max-beliefs'", id="max-beliefs-zero"),
    pytest.param(["enrich", "alice", "hi", "--min-confidence", "nan"], "'--min-confidence': 'nan' is not a number",
                 id="min-confidence-nan"),
    pytest.param(["enrich", "alice", "hi", "--min-confidence", "-inf"], "'--min-confidence'", id="min-confidence-inf"),
    pytest.param(["refresh", "--as-of", "0001-01-01T00:00:00+01:00"], "'--as-of'", id="as-of-without-a-utc-time"),
    pytest.param(["backfill", "--from", "0001-01-01T00:00:00+05:00", "--to", "2024-01-02"], "'--from'",
                 id="from-without-a-utc-time"),
])
def test_an_option_out_of_range_is_a_usage_error_and_writes_nothing(published: str, args: list[str],
                                                                    named: str) -> None:
    before = tables(published)
    assert_usage_error(CliRunner().invoke(main, ["--config", published, *args]), named)
    assert tables(published) == before


@pytest.mark.parametrize("args", [
    pytest.param(["refresh", "--as-of", FAR_FUTURE], id="refresh"),
    pytest.param(["refresh", "--full", "--as-of", FAR_FUTURE], id="refresh-full"),
    pytest.param(["backfill", "--from", "9998-12-30", "--to", FAR_FUTURE], id="backfill"),
    pytest.param(["eval", "--as-of", FAR_FUTURE], id="eval"),
    pytest.param(["nightly", "--as-of", FAR_FUTURE], id="nightly"),  # refused before Prefect starts or ingest runs
])
def test_an_as_of_in_the_future_is_refused_with_one_line_and_nothing_written(published: str,
                                                                             args: list[str]) -> None:
    before = tables(published)
    result = CliRunner().invoke(main, ["--config", published, *args])
    line = assert_usage_error(result, "9999-01-01T00:00:00+00:00 is in the future",
                              "ingest.max_clock_skew_seconds = 300")
    assert line == result.stderr.strip()
    assert tables(published) == before


def test_after_a_refresh_into_the_far_future_refresh_names_the_way_out_and_it_works(belief_warehouse) -> None:
    settings = belief_warehouse()
    config = str(settings.base_dir / "selfmodel.yaml")
    far_future = datetime(9999, 1, 1, tzinfo=timezone.utc)
    con = connect(settings.warehouse_path)
    try:  # what `refresh --as-of 9999-01-01T00:00:00Z` left before it was refused
        refresh_beliefs(con, settings, as_of=far_future, clock=FixedClock(far_future))
    finally:
        con.close()
    run = lambda *args: CliRunner().invoke(main, ["--config", config, *args])  # noqa: E731

    stuck = run("refresh")  # as every nightly run was
    assert_usage_error(stuck, "in the future", "`selfmodel refresh --full`", "selfmodel backfill")
    rebuilt = run("refresh", "--full")
    assert rebuilt.exit_code == 0, rebuilt.output
    again = run("refresh")
    assert again.exit_code == 0, again.output
    shown = run("beliefs", "alice")
    assert shown.exit_code == 0 and "as of 2024-01-12" in shown.stdout and " * " in shown.stdout  # enrichable again
