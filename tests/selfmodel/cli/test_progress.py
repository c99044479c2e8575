"""Progress of the long commands: `refresh` and `eval` report their steps, shown as a rich bar on a terminal."""

from __future__ import annotations

import io

from tests.belief_warehouse import belief_warehouse, belief_warehouse_template  # noqa: F401
from tests.conftest import REPO_ROOT
from warehouse.db import connect


def terminal(monkeypatch) -> io.StringIO:
    from rich.console import Console

    from selfmodel.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(render, "stderr_console", lambda: Console(file=screen, force_terminal=True, width=120))
    return screen


def test_refresh_progress_shows_as_a_bar_through_its_steps(belief_warehouse, monkeypatch):
    from selfmodel.beliefs.refresh import REFRESH_STEPS, refresh_beliefs
    from selfmodel.cli.render import step_progress

    screen = terminal(monkeypatch)
    settings = belief_warehouse()
    heard = []
    con = connect(settings.warehouse_path)
    try:
        with step_progress("refresh", enabled=True) as bar:
            refresh_beliefs(con, settings, full=True,
                            progress=lambda step, done, total: (heard.append((step, done, total)), bar(step, done, total)))
    finally:
        con.close()
    steps = len(REFRESH_STEPS)
    assert heard == [*((step, done, steps) for done, step in enumerate(REFRESH_STEPS)), ("done", steps, steps)]
    assert "refresh: done" in screen.getvalue() and f"{steps}/{steps}" in screen.getvalue()


def test_eval_reports_its_steps(belief_warehouse):
    from selfmodel.evals.run import run_evals

    settings = belief_warehouse(eval={"path": str(REPO_ROOT / "expectations")})
    heard = []
    con = connect(settings.warehouse_path)
    try:
        run_evals(con, settings, ["predictive"], progress=lambda *report: heard.append(report))
    finally:
        con.close()
    assert heard == [("predictive suites", 0, 3), ("labeled suites", 1, 3), ("judge, store and alert", 2, 3),
                     ("done", 3, 3)]


def test_without_a_terminal_there_is_no_bar():
    from selfmodel.cli.render import step_progress

    with step_progress("eval", enabled=False) as bar:
        assert bar is None
