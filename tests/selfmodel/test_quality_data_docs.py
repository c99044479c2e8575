"""The Data Docs site GX builds through Checkpoints with UpdateDataDocsAction: an index, a page per suite
and per validation (parsed, not grepped), failures shown as failed, no credentials in the site or the
GX context, and a forgotten user's validations gone from both."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

from selfmodel.forget import forget_user
from selfmodel.quality import data_docs_folder, prune_data_docs, validate
from tests.selfmodel.test_quality import (  # noqa: F401 (fixtures)
    INGESTED, SUITES, clock, raw_suite, template, tiny,
)


class Page(HTMLParser):
    """Visible text, script text, and for each table row (nested tables inside it included) its text and
    the classes of its icons."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.rows: list[tuple[str, set[str]]] = []
        self._open_rows: list[tuple[list[str], set[str]]] = []
        self._text: list[str] = []
        self._scripts: list[str] = []
        self._skip = 0
        self.feed(path.read_text(encoding="utf-8"))
        self.text = " ".join(" ".join(self._text).split())
        self.script = "".join(self._scripts)

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "tr":
            self._open_rows.append(([], set()))
        if tag == "i":
            for _, icons in self._open_rows:
                icons.update((attrs.get("class") or "").split())

    def handle_endtag(self, tag) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        if tag == "tr" and self._open_rows:
            words, icons = self._open_rows.pop()
            self.rows.append((" ".join(" ".join(words).split()), icons))

    def handle_data(self, data) -> None:
        if self._skip:
            self._scripts.append(data)
            return
        self._text.append(data)
        for words, _ in self._open_rows:
            words.append(data)


def index_of(folder: Path) -> tuple[set[Path], dict[Path, str]]:
    """GX's index page: the suite pages it links, and {validation page: Success | Failed}. Its tables are
    bootstrap-table data in a script: the rows are read from there."""
    page = Page(folder / "index.html")
    suites = {(folder / href).resolve() for href in re.findall(r'href="(expectations/[^"]+\.html)"', page.script)}
    validations = {(folder / link).resolve(): status for link, status in re.findall(
        r"'_table_row_link_path': '(validations/[^']+\.html)', '_validation_success_text': '(\w+)'", page.script)}
    return suites, validations


def test_the_site_has_an_index_a_page_per_suite_and_per_validation_and_shows_failures(tiny) -> None:
    settings, con, _ = tiny
    first = validate(con, settings, clock=clock(0))
    [(as_of,)] = con.execute("select max(as_of) from beliefs").fetchall()
    con.execute("insert into belief_history values ('u9', 'mystery', 'cooking', 1.5, 3, 2.0, ?, ?, ?, null)",
                [as_of - timedelta(days=2), as_of - timedelta(days=1), as_of]).fetchall()
    [failed] = validate(con, settings, suites=["beliefs"], clock=clock(1))

    docs = data_docs_folder(settings)
    suite_pages, validation_pages = index_of(docs)
    for suite in ("beliefs", "eval_inputs", "events_batch", "quarantine_rate"):
        suite_page = docs / "expectations" / f"{suite}.html"
        assert suite_page.resolve() in suite_pages
        text = Page(suite_page).text
        # every expectation of the file is on its suite page, with its severity and notes
        assert text.count("Severity: block") == sum(e["severity"] == "critical" for e in raw_suite(suite)["expectations"])
    assert len(validation_pages) == len(first) + 1
    for report in [*first, failed]:
        # the page the warehouse links is the site's, and the index says whether it passed
        assert validation_pages[Path(report.data_docs)] == ("Success" if report.success else "Failed")
        assert Path(report.data_docs).is_relative_to(docs.resolve() / "validations" / report.suite)
        assert report.validation_id in Page(Path(report.data_docs)).text
    [(stored_page,)] = con.execute("select data_docs from expectation_runs where validation_id = ?",
                                   [failed.validation_id]).fetchall()
    assert stored_page == failed.data_docs

    page = Page(Path(failed.data_docs))
    assert "Status: Failed" in page.text
    failed_rows = [row for row, icons in page.rows if "fa-times" in icons]
    assert len(failed_rows) == failed.blocking_failures + failed.warnings == 2
    # the confidence of 1.5, failed, with the value that failed it
    assert any(row.startswith("values must be greater than or equal to 0.0 and less than 1.0 .")
               and "Unexpected Value Count 1.5 1" in row for row in failed_rows)
    passing = Page(Path(next(r for r in first if r.suite == "beliefs").data_docs))
    assert "Status: Succeeded" in passing.text and "fa-times" not in " ".join(" ".join(i) for _, i in passing.rows)


def test_the_site_and_the_gx_context_hold_no_credentials(tiny, monkeypatch) -> None:
    settings, con, settings_with = tiny
    webhook = "https://hooks.example.com/services/T000/B000/s3cr3t-w3bh00k-t0k3n"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    settings = settings_with(alerts={"owners": {"nightly": [{"name": "Ana", "webhook": webhook}]}})
    validate(con, settings, clock=clock(0))

    folders = [data_docs_folder(settings), settings.warehouse_path.parent / "gx"]
    files = [path for folder in folders for path in folder.rglob("*") if path.is_file()]
    assert len(files) > 10
    for path in files:
        content = path.read_bytes()
        for secret in ("s3cr3t-w3bh00k-t0k3n", "sk-test-0123456789abcdef"):
            assert secret.encode() not in content, path


def test_forgetting_a_user_removes_their_validations_from_the_context_and_the_site(tiny, tmp_path: Path) -> None:
    settings, con, settings_with = tiny
    folder = tmp_path / "suites"
    folder.mkdir()
    raw = raw_suite("beliefs")
    raw["expectations"].append({"type": "expect_column_values_to_be_in_set", "severity": "warning", "meta": {},
                                "kwargs": {"column": "user_id", "value_set": ["u2"]}})  # lists u1 as unexpected
    (folder / "beliefs.json").write_text(json.dumps(raw))
    settings = settings_with(quality={"path": str(folder)})
    [named] = validate(con, settings, clock=clock(0))
    con.execute("delete from belief_history where user_id = 'u1'")
    [kept] = validate(con, settings, clock=clock(1))  # names no one
    gx_results = settings.warehouse_path.parent / "gx" / "uncommitted" / "validations"
    assert any(b'"u1"' in path.read_bytes() for path in gx_results.rglob("*.json"))

    counts = forget_user(con, "u1", settings=settings)
    assert counts["data_docs_pages"] == [named.data_docs]
    Path(named.data_docs).unlink()  # as selfmodel.forget does
    assert prune_data_docs(con, settings) == 1

    assert not any(b'"u1"' in path.read_bytes() for path in gx_results.rglob("*.json"))
    _, validation_pages = index_of(data_docs_folder(settings))
    assert list(validation_pages) == [Path(kept.data_docs)]
    assert named.validation_id not in (data_docs_folder(settings) / "index.html").read_text()
    assert not Path(named.data_docs).exists()


def test_a_changed_suite_file_is_registered_again_and_an_unchanged_one_is_not(tiny, tmp_path: Path) -> None:
    settings, con, settings_with = tiny
    folder = tmp_path / "suites"
    folder.mkdir()
    raw = raw_suite("beliefs")
    (folder / "beliefs.json").write_text(json.dumps(raw))
    settings = settings_with(quality={"path": str(folder)})
    [first] = validate(con, settings, clock=clock(0))
    registered = settings.warehouse_path.parent / "gx" / "expectations" / "beliefs.json"
    written = registered.stat().st_mtime_ns
    [same] = validate(con, settings, clock=clock(1))
    assert registered.stat().st_mtime_ns == written and len(same.outcomes) == len(first.outcomes)

    raw["expectations"].append({"type": "expect_column_values_to_be_in_set", "severity": "warning", "meta": {},
                                "kwargs": {"column": "user_id", "value_set": ["u2"]}})
    (folder / "beliefs.json").write_text(json.dumps(raw))
    [changed] = validate(con, settings, clock=clock(2))
    assert len(changed.outcomes) == len(first.outcomes) + 1
    assert [(o.expectation, o.severity) for o in changed.failures()] == [
        ("expect_column_values_to_be_in_set(user_id)", "warn")]
    assert "Severity: warn" in Page(data_docs_folder(settings) / "expectations" / "beliefs.html").text
