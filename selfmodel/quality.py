"""Data-quality expectations: Great Expectations suites (expectations/*.json) run against the warehouse.

A suite file is GX's own `ExpectationSuite.to_json_dict()`. GX's per-expectation `severity` is ours:
`critical` means **block** (a publish must stop), `warning` means **warn** (someone should look). Each
expectation states it explicitly; `notes` says why. The suite's `meta.selfmodel` says what it checks:

- `query`: warehouse/queries/<query>.sql, read into a pandas DataFrame. GX validates the frame, not DuckDB
  through SQLAlchemy, where every expectation silently crashes (STACK_NOTES §3). Timestamps in the frame
  and in the parameters are UTC without a zone: GX compares zoned pandas columns through a path pandas
  has deprecated.
- `incremental: batch`: validated once per committed ingest batch (the query gets `$batch_id`); batches
  already validated are remembered in `expectation_runs.batch_id`. Without it the whole asset is validated
  on every run.
- `asset`: what a validation is about, `$batch_id`, `$source` or a fixed name. `blocking_failures` reads
  the latest validation of each (suite, asset), so a later passing validation of the same asset clears an
  older failure.

Expectations may name run-time values as `{"$PARAMETER": name}`; `suite_parameters` lists them.
A crashed expectation (GX's `exception_info`) or a crashed validation counts as failed, never as passed.
Every validation is stored (`expectation_runs`, one `expectation_results` row per expectation) and gets
an HTML page rendered by GX's Data Docs renderer, listed in `<data_docs>/index.html`.

GX is imported inside functions only: importing it takes seconds.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from warehouse.db import execute, load_sql, run, run_dicts

log = logging.getLogger("selfmodel.quality")

# GX severity -> ours. "info" is not accepted: every expectation must decide whether it stops a publish.
SEVERITIES = {"critical": "block", "warning": "warn"}
INDEX_LIMIT = 1000  # validations listed on the Data Docs index page


class QualityError(ValueError):
    """A suite that cannot be loaded or run as asked (the message names the file or the suite)."""


@dataclass(frozen=True)
class SuiteSpec:
    """One suite file: GX's JSON plus what it checks and each expectation's label and severity."""

    name: str
    path: Path
    raw: dict
    query: str
    asset: str
    incremental: str | None
    labels: tuple[str, ...]
    severities: tuple[str, ...]


@dataclass
class ExpectationOutcome:
    expectation: str
    severity: str  # block | warn
    success: bool
    unexpected_count: int | None
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"expectation": self.expectation, "severity": self.severity, "success": self.success,
                "unexpected_count": self.unexpected_count, "exception": self.details.get("exception")}


@dataclass
class ValidationReport:
    validation_id: str
    suite: str
    asset: str
    batch_id: str | None
    validated_at: datetime
    rows: int
    outcomes: list[ExpectationOutcome]
    data_docs: str | None = None

    @property
    def blocking_failures(self) -> int:
        return sum(1 for o in self.outcomes if not o.success and o.severity == "block")

    @property
    def warnings(self) -> int:
        return sum(1 for o in self.outcomes if not o.success and o.severity == "warn")

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_json(self) -> dict:
        return {
            "validation_id": self.validation_id, "suite": self.suite, "asset": self.asset,
            "batch_id": self.batch_id, "validated_at": self.validated_at.isoformat(), "rows": self.rows,
            "success": self.success, "blocking_failures": self.blocking_failures, "warnings": self.warnings,
            "evaluated": len(self.outcomes), "data_docs": self.data_docs,
            "failures": [o.to_json() for o in self.failures()],
        }


# --- suite files -------------------------------------------------------------------------------------

def suites_folder(settings: Settings) -> Path:
    return settings.resolve(settings.quality.path)


def data_docs_folder(settings: Settings) -> Path:
    configured = settings.quality.data_docs_path
    return settings.resolve(configured) if configured else settings.warehouse_path.parent / "data_docs"


def expectation_label(raw: dict) -> str:
    """`type(columns)`, plus ` if <row condition>` when the expectation only applies to some rows."""
    kwargs = raw.get("kwargs") or {}
    columns = kwargs.get("column_list") or [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    label = f"{raw.get('type')}({', '.join(str(c) for c in columns)})"
    condition = _condition_text(kwargs.get("row_condition"))
    return f"{label} if {condition}" if condition else label


def _condition_text(condition) -> str | None:
    """GX's serialised row condition as short text: kind IN ["message", "response"]."""
    if not condition:
        return None
    if isinstance(condition, str):
        return condition
    kind = condition.get("type")
    if kind == "comparison":
        return f"{condition['column']['name']} {condition['operator']} {json.dumps(condition.get('parameter'))}"
    if kind == "pass_through":
        return condition.get("pass_through_filter")
    if kind in ("and", "or") and isinstance(condition.get("conditions"), list):
        return f" {kind.upper()} ".join(f"({_condition_text(c)})" for c in condition["conditions"])
    return json.dumps(condition, sort_keys=True)


def load_suite(path: Path) -> SuiteSpec:
    """Read and check one suite file (without importing GX)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QualityError(f"suite {path}: cannot be read: {exc}") from None
    if not isinstance(raw, dict) or raw.get("name") != path.stem:
        raise QualityError(f"suite {path}: must be a JSON object whose name is {path.stem!r}")
    declared = (raw.get("meta") or {}).get("selfmodel")
    if not isinstance(declared, dict) or not declared.get("query") or not declared.get("asset"):
        raise QualityError(f"suite {path}: meta.selfmodel must give the asset `query` and `asset`")
    if declared.get("incremental") not in (None, "batch"):
        raise QualityError(f"suite {path}: meta.selfmodel.incremental must be 'batch' or absent")
    expectations = raw.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise QualityError(f"suite {path}: has no expectations")
    labels, severities = [], []
    for number, expectation in enumerate(expectations, start=1):
        label = expectation_label(expectation)
        severity = expectation.get("severity")
        if severity not in SEVERITIES:
            raise QualityError(
                f"suite {path}: expectation {number} ({label}) must state its severity: "
                "'critical' (block) or 'warning' (warn)"
            )
        if (label, SEVERITIES[severity]) in zip(labels, severities):
            raise QualityError(f"suite {path}: expectation {number} repeats {label} at the same severity")
        labels.append(label)
        severities.append(SEVERITIES[severity])
    return SuiteSpec(
        name=path.stem, path=path, raw=raw, query=declared["query"], asset=declared["asset"],
        incremental=declared.get("incremental"), labels=tuple(labels), severities=tuple(severities),
    )


def load_suites(settings: Settings, names: list[str] | None = None) -> list[SuiteSpec]:
    """The suites in the configured folder (or the named ones), by name."""
    folder = suites_folder(settings)
    if not folder.is_dir():
        raise QualityError(f"expectation suites folder {folder} not found (set quality.path)")
    specs = {path.stem: load_suite(path) for path in sorted(folder.glob("*.json"))}
    if not names:
        return list(specs.values())
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise QualityError(f"unknown suite(s) {unknown}; known: {sorted(specs)}")
    return [specs[name] for name in dict.fromkeys(names)]


def suite_parameters(settings: Settings, now: datetime, batch_started_at: datetime | None = None) -> dict:
    """Values the suites refer to as {"$PARAMETER": name}."""
    from selfmodel.beliefs.extractors import EXTRACTOR_NAMES

    skew = timedelta(seconds=settings.ingest.max_clock_skew_seconds)
    return {
        "kinds": list(settings.ingest.kinds),
        "min_occurred_at": _naive_utc(settings.ingest.min_occurred_at),
        # What ingestion accepted: up to its start (or now, for whole tables) plus the allowed skew.
        "max_occurred_at": _naive_utc((batch_started_at or now) + skew),
        "quarantine_rate_warn": settings.quality.quarantine_rate_warn,
        "quarantine_rate_block": settings.quality.quarantine_rate_block,
        "key_families": sorted(settings.beliefs.keys),
        "extractors": list(EXTRACTOR_NAMES),
    }


# --- validation ---------------------------------------------------------------------------------------

def validate(con: duckdb.DuckDBPyConnection, settings: Settings, suites: list[str] | None = None,
             batch_ids: list[str] | None = None, clock: Clock | None = None) -> list[ValidationReport]:
    """Validate the warehouse against the suites (default: all) and store and render every validation.

    Per-batch suites validate the committed batches they have not validated yet, or exactly `batch_ids`
    (a re-validation, e.g. after fixing a batch's rows). Whole-asset suites validate their asset every time.
    """
    specs = load_suites(settings, suites)
    now = (clock or SystemClock()).now()
    docs = data_docs_folder(settings)
    one_valued = sorted(name for name, key in settings.beliefs.keys.items() if key.cardinality == "one")
    if batch_ids:
        known = {row["batch_id"] for row in run_dicts(con, "expectation_pending_batches",
                                                       {"suite": "", "batch_ids": list(batch_ids)})}
        missing = sorted(set(batch_ids) - known)
        if missing:
            raise QualityError(f"no committed ingest batch that read records with id(s) {missing}")
    validator = None
    reports = []
    for spec in specs:
        targets = _targets(con, spec, batch_ids)
        for target in targets:
            validator = validator or _GxValidator()
            query_params = {"batch_id": target.get("batch_id"), "one_valued_families": one_valued}
            frame = _read_asset(con, spec.query, query_params)
            parameters = suite_parameters(settings, now, target.get("started_at"))
            report = ValidationReport(
                validation_id=f"{now:%Y%m%dT%H%M%S}-{spec.name}-{uuid.uuid4().hex[:8]}",
                suite=spec.name, asset=_asset_name(spec, target), batch_id=target.get("batch_id"),
                validated_at=now, rows=len(frame), outcomes=[],
            )
            result = validator.run(spec, frame, parameters, report)
            report.data_docs = str(_write_page(docs, report, result))
            _store(con, report)
            reports.append(report)
            log.info("%s on %s: %d rows, %d blocking failures, %d warnings", spec.name, report.asset,
                     report.rows, report.blocking_failures, report.warnings)
    write_index(con, docs)
    return reports


def _targets(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, batch_ids: list[str] | None) -> list[dict]:
    if spec.incremental != "batch":
        return [{}]
    return run_dicts(con, "expectation_pending_batches",
                     {"suite": spec.name, "batch_ids": list(batch_ids) if batch_ids else None})


def _asset_name(spec: SuiteSpec, target: dict) -> str:
    if spec.asset.startswith("$"):
        value = target.get(spec.asset[1:])
        if value is None:
            raise QualityError(f"suite {spec.path}: asset {spec.asset} is only known for per-batch suites")
        return str(value)
    return spec.asset


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _read_asset(con: duckdb.DuckDBPyConnection, query: str, params: dict):
    """The asset as a pandas DataFrame (zoned timestamps as naive UTC), binding the parameters it names."""
    import pandas as pd

    sql = load_sql(query)
    code = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    wanted = {key: value for key, value in params.items() if re.search(rf"\${key}\b", code)}
    try:
        # Through Arrow: DuckDB's own .df() trips a pandas deprecation warning on every call.
        frame = con.sql(sql, params=wanted or None).to_arrow_table().to_pandas()
    except duckdb.Error as exc:
        raise QualityError(f"asset query {query}.sql failed: {exc}") from None
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


class _GxValidator:
    """An ephemeral GX context with one pandas data source; one validation definition per suite."""

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self.source = self.context.data_sources.add_pandas("warehouse")
        self.definitions: dict[str, object] = {}

    def _definition(self, spec: SuiteSpec):
        if spec.name not in self.definitions:
            from great_expectations.core import ExpectationSuite

            try:
                suite = self.context.suites.add(ExpectationSuite(**json.loads(json.dumps(spec.raw))))
            except Exception as exc:  # GX raises many types for a bad suite; all mean "fix the file"
                raise QualityError(f"suite {spec.path}: not a valid Great Expectations suite: {exc}") from None
            batch = self.source.add_dataframe_asset(spec.name).add_batch_definition_whole_dataframe(spec.name)
            self.definitions[spec.name] = (
                self.context.validation_definitions.add(
                    self.gx.ValidationDefinition(name=spec.name, data=batch, suite=suite)),
                [expectation.id for expectation in suite.expectations],
            )
        return self.definitions[spec.name]

    def run(self, spec: SuiteSpec, frame, parameters: dict, report: ValidationReport):
        """Fill report.outcomes (one per expectation, in suite order); return GX's result (None if it crashed)."""
        from great_expectations.core.run_identifier import RunIdentifier

        definition, ids = self._definition(spec)
        try:
            result = definition.run(
                batch_parameters={"dataframe": frame}, expectation_parameters=parameters,
                result_format={"result_format": "SUMMARY"},
                run_id=RunIdentifier(run_name=report.validation_id, run_time=report.validated_at),
            )
        except Exception as exc:
            # The whole validation crashed: every expectation failed, none passed.
            log.warning("validation %s of %s crashed: %s", report.validation_id, spec.name, exc)
            message = f"validation crashed: {type(exc).__name__}: {exc}"
            report.outcomes = [ExpectationOutcome(label, severity, False, None, {"exception": message})
                               for label, severity in zip(spec.labels, spec.severities)]
            return None
        by_id = {r.expectation_config.id: r for r in result.results}
        for expectation_id, label, severity in zip(ids, spec.labels, spec.severities):
            found = by_id.get(expectation_id)
            if found is None:
                report.outcomes.append(ExpectationOutcome(label, severity, False, None,
                                                          {"exception": "not evaluated by Great Expectations"}))
                continue
            report.outcomes.append(_outcome(found, label, severity))
        return result


def _outcome(result, label: str, severity: str) -> ExpectationOutcome:
    """One expectation's outcome. A raised exception is a failure whatever `success` says."""
    crashed = raised_exception(result.exception_info)
    values = result.result or {}
    kwargs = {k: v for k, v in result.expectation_config.kwargs.items() if k != "batch_id"}
    details = {
        "kwargs": kwargs,
        "observed_value": values.get("observed_value"),
        "element_count": values.get("element_count"),
        "unexpected_percent": values.get("unexpected_percent"),
        "partial_unexpected_list": values.get("partial_unexpected_list"),
        "exception": crashed,
    }
    unexpected = values.get("unexpected_count")
    return ExpectationOutcome(label, severity, bool(result.success) and crashed is None,
                              None if unexpected is None else int(unexpected), _jsonable(details))


def raised_exception(info) -> str | None:
    """The message of any exception GX caught while evaluating an expectation, else None.

    GX reports it flat ({raised_exception, exception_message, ...}) or per metric ({metric id: {...}}).
    """
    if not info:
        return None
    if hasattr(info, "to_json_dict"):
        info = info.to_json_dict()
    entries = [info] if isinstance(info, dict) and "raised_exception" in info else list(dict(info).values())
    messages = []
    for entry in entries:
        if hasattr(entry, "to_json_dict"):
            entry = entry.to_json_dict()
        if isinstance(entry, dict) and entry.get("raised_exception"):
            messages.append(entry.get("exception_message") or "an exception was raised")
    return "; ".join(messages) or None


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _store(con: duckdb.DuckDBPyConnection, report: ValidationReport) -> None:
    """One expectation_runs row and one expectation_results row per expectation, in one transaction."""
    results = pa.table({
        "expectation": pa.array([o.expectation for o in report.outcomes], pa.string()),
        "severity": pa.array([o.severity for o in report.outcomes], pa.string()),
        "success": pa.array([o.success for o in report.outcomes], pa.bool_()),
        "unexpected_count": pa.array([o.unexpected_count for o in report.outcomes], pa.int64()),
        "details": pa.array([json.dumps(o.details) for o in report.outcomes], pa.string()),
    })
    execute(con, "begin transaction")
    try:
        run(con, "insert_expectation_run", {
            "validation_id": report.validation_id, "suite": report.suite, "asset": report.asset,
            "validated_at": report.validated_at, "success": report.success,
            "blocking_failures": report.blocking_failures, "warnings": report.warnings,
            "evaluated": len(report.outcomes), "data_docs": report.data_docs, "batch_id": report.batch_id,
        })
        con.register("new_results", results)
        try:
            run(con, "insert_expectation_results", {"validation_id": report.validation_id})
        finally:
            con.unregister("new_results")
        execute(con, "commit")
    except Exception:
        execute(con, "rollback")
        raise


def blocking_failures(con: duckdb.DuckDBPyConnection, suites: list[str] | None = None) -> list[dict]:
    """Failed block-severity expectations in the latest validation of each (suite, asset).

    What a publish must not go past. Each: {suite, asset, batch_id, validation_id, validated_at,
    expectation, unexpected_count, details, data_docs}.
    """
    rows = run_dicts(con, "blocking_failures", {"suites": list(suites) if suites else None})
    for row in rows:
        row["details"] = json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]
    return rows


# --- HTML ---------------------------------------------------------------------------------------------

_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
.block{color:#a40000;font-weight:600}.warn{color:#8a5a00}.ok{color:#1a6b1a}
.selfmodel-summary{border:2px solid #888;padding:.5rem 1rem;margin:0 0 1rem 0;background:#fafafa}
</style>"""


def _summary_html(report: ValidationReport) -> str:
    if report.success:
        verdict = '<span class="ok">passed</span>'
    else:
        verdict = (f'<span class="block">{report.blocking_failures} blocking failure(s)</span>, '
                   f'<span class="warn">{report.warnings} warning(s)</span>')
    rows = "".join(
        f'<tr><td class="{o.severity}">{o.severity}</td><td>{html.escape(o.expectation)}</td>'
        f"<td>{'' if o.unexpected_count is None else o.unexpected_count}</td>"
        f"<td>{html.escape(o.details.get('exception') or '')}</td></tr>"
        for o in report.failures()
    )
    table = (f"<table><tr><th>severity</th><th>failed expectation</th><th>unexpected</th><th>exception</th></tr>"
             f"{rows}</table>") if rows else ""
    return (f'<div class="selfmodel-summary"><h2>{html.escape(report.suite)} on {html.escape(report.asset)}</h2>'
            f"<p>validation {html.escape(report.validation_id)} at {report.validated_at.isoformat()}, "
            f"{report.rows} rows, {len(report.outcomes)} expectations: {verdict}. "
            f'Severity: GX "critical" blocks, "warning" warns. <a href="../../index.html">all validations</a></p>'
            f"{table}</div>")


@cache
def _page_renderer():
    """GX's Data Docs renderer and HTML view (the view compiles its templates once)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return ValidationResultsPageRenderer(), DefaultJinjaPageView()


def _write_page(docs: Path, report: ValidationReport, result) -> Path:
    """GX's Data Docs page for the validation, headed by our severity summary."""
    path = docs / "validations" / report.suite / f"{report.validation_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    page = None
    if result is not None:
        try:
            renderer, view = _page_renderer()
            page = view.render(renderer.render(result))
        except Exception as exc:  # the page is a convenience; the warehouse rows are the record
            log.warning("GX could not render validation %s: %s", report.validation_id, exc)
    summary = _STYLE + _summary_html(report)
    if page and re.search(r"<body[^>]*>", page):
        page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + summary, page, count=1)
    else:
        details = html.escape(json.dumps([o.__dict__ for o in report.outcomes], indent=2, default=str))
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.suite)}</title>"
                f"</head><body>{summary}<pre>{details}</pre></body></html>")
    path.write_text(page, encoding="utf-8")
    return path.resolve()


def write_index(con: duckdb.DuckDBPyConnection, docs: Path) -> Path:
    """index.html: the latest validations, newest first, with their failures and links to their pages."""
    docs.mkdir(parents=True, exist_ok=True)
    rows = []
    for run_row in run_dicts(con, "expectation_runs_recent", {"limit": INDEX_LIMIT}):
        page = run_row["data_docs"]
        link = html.escape(os.path.relpath(page, docs)) if page else ""
        status = ('<span class="ok">passed</span>' if run_row["success"] else
                  f'<span class="block">{run_row["blocking_failures"]} block</span> / '
                  f'<span class="warn">{run_row["warnings"]} warn</span>')
        failed = "<br>".join(
            f'<span class="{"block" if f.startswith("block") else "warn"}">{html.escape(f)}</span>'
            for f in run_row["failed"])
        rows.append(
            f"<tr><td>{run_row['validated_at']:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(run_row['suite'])}</td>"
            f"<td>{html.escape(run_row['asset'])}</td><td>{status}</td><td>{run_row['evaluated']}</td>"
            f"<td>{failed}</td><td>{f'<a href={chr(34)}{link}{chr(34)}>page</a>' if link else ''}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="7">no validations yet: run `selfmodel expectations`</td></tr>'
    index = docs / "index.html"
    index.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>selfmodel data quality</title>"
        f"{_STYLE}</head><body><h1>Data-quality validations</h1>"
        "<p>Great Expectations suites from expectations/*.json; block-severity failures stop a publish.</p>"
        "<table><tr><th>validated at (UTC)</th><th>suite</th><th>asset</th><th>result</th><th>expectations</th>"
        f"<th>failed</th><th></th></tr>{body}</table></body></html>",
        encoding="utf-8",
    )
    return index
