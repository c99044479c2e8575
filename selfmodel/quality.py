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
Every validation is stored (`expectation_runs`, one `expectation_results` row per expectation) and runs
through a Checkpoint of GX's file-backed context in `<warehouse folder>/gx/`, whose UpdateDataDocsAction
adds its page to a real Data Docs site in `<data_docs>/` (index.html, a page per suite and per
validation; static files, hostable as they are). A suite's page gives each expectation's severity.

GX is imported inside functions only: importing it takes seconds.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from warehouse.db import execute, load_sql, run, run_dicts

log = logging.getLogger("selfmodel.quality")

# GX severity -> ours. "info" is not accepted: every expectation must decide whether it stops a publish.
SEVERITIES = {"critical": "block", "warning": "warn"}
INDEX_LIMIT = 1000  # validations listed on the Data Docs index page, the newest


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
            validator = validator or _GxValidator(settings)
            query_params = {"batch_id": target.get("batch_id"), "one_valued_families": one_valued}
            frame = _read_asset(con, spec.query, query_params)
            parameters = suite_parameters(settings, now, target.get("started_at"))
            report = ValidationReport(
                validation_id=f"{now:%Y%m%dT%H%M%S}-{spec.name}-{uuid.uuid4().hex[:8]}",
                suite=spec.name, asset=_asset_name(spec, target), batch_id=target.get("batch_id"),
                validated_at=now, rows=len(frame), outcomes=[],
            )
            validator.run(spec, frame, parameters, report)
            _store(con, report)
            reports.append(report)
            log.info("%s on %s: %d rows, %d blocking failures, %d warnings", spec.name, report.asset,
                     report.rows, report.blocking_failures, report.warnings)
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
    """The file-backed GX context (gx_context): per suite, a dataframe asset, a validation definition and a
    Checkpoint whose UpdateDataDocsAction adds the validation's page to the site."""

    def __init__(self, settings: Settings) -> None:
        self.context = gx_context(settings)
        self.definitions: dict[str, tuple] = {}

    def _checkpoint(self, spec: SuiteSpec):
        """The suite's Checkpoint (the one a previous run registered if the suite file is unchanged, else
        registered again from the file) and the ids GX gave its expectations, in suite order."""
        if spec.name not in self.definitions:
            self.definitions[spec.name] = self._registered(spec) or self._register(spec)
        return self.definitions[spec.name]

    def _registered(self, spec: SuiteSpec) -> tuple | None:
        """The checkpoint a previous run registered, if the suite file has not changed since: registering
        again costs about a second per suite (GX compares and rewrites every expectation)."""
        try:
            suite = self.context.suites.get(spec.name)
            if suite.meta.get(_FINGERPRINT) != _fingerprint(spec):
                return None
            checkpoint = self.context.checkpoints.get(spec.name)
        except Exception:  # not registered yet, or unreadable: register again
            return None
        return checkpoint, [expectation.id for expectation in suite.expectations]

    def _register(self, spec: SuiteSpec) -> tuple:
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction
        from great_expectations.core import ExpectationSuite

        try:
            suite = self.context.suites.add_or_update(ExpectationSuite(**_registered_suite(spec)))
        except Exception as exc:  # GX raises many types for a bad suite; all mean "fix the file"
            raise QualityError(f"suite {spec.path}: not a valid Great Expectations suite: {exc}") from None
        source = _data_source(self.context)
        try:
            asset = source.get_asset(spec.name)
        except LookupError:
            asset = source.add_dataframe_asset(spec.name)
        try:
            batch = asset.get_batch_definition(spec.name)
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe(spec.name)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=spec.name, data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=spec.name, validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
            result_format={"result_format": "SUMMARY"},
        ))
        return checkpoint, [expectation.id for expectation in suite.expectations]

    def run(self, spec: SuiteSpec, frame, parameters: dict, report: ValidationReport) -> None:
        """Fill report.outcomes (one per expectation, in suite order) and report.data_docs (its page)."""
        from great_expectations.core.run_identifier import RunIdentifier

        checkpoint, ids = self._checkpoint(spec)
        run_id = RunIdentifier(run_name=report.validation_id, run_time=report.validated_at)
        try:
            result = checkpoint.run(
                batch_parameters={"dataframe": frame}, expectation_parameters=parameters, run_id=run_id)
            [(key, suite_result)] = result.run_results.items()
        except Exception as exc:
            # The whole validation crashed: every expectation failed, none passed.
            log.warning("validation %s of %s crashed: %s", report.validation_id, spec.name, exc)
            message = f"validation crashed: {type(exc).__name__}: {exc}"
            report.outcomes = [ExpectationOutcome(label, severity, False, None, {"exception": message})
                               for label, severity in zip(spec.labels, spec.severities)]
            report.data_docs = self._crashed_page(spec, run_id, message)
            return
        by_id = {r.expectation_config.id: r for r in suite_result.results}
        for expectation_id, label, severity in zip(ids, spec.labels, spec.severities):
            found = by_id.get(expectation_id)
            if found is None:
                report.outcomes.append(ExpectationOutcome(label, severity, False, None,
                                                          {"exception": "not evaluated by Great Expectations"}))
                continue
            report.outcomes.append(_outcome(found, label, severity))
        report.data_docs = self._page(key)

    def _page(self, key) -> str | None:
        """The path of the site's page for a validation result or suite, if GX wrote it."""
        from urllib.parse import unquote, urlparse

        [site] = self.context.get_docs_sites_urls(resource_identifier=key, site_name=SITE_NAME, only_if_exists=True)
        url = site.get("site_url")
        if not url:
            log.warning("GX did not write the Data Docs page of %s", key)
            return None
        return str(Path(unquote(urlparse(url).path)).resolve())

    def _crashed_page(self, spec: SuiteSpec, run_id, message: str) -> str | None:
        """A result that says every expectation failed with the crash, stored and rendered as GX's own."""
        import great_expectations as gx
        from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier, ValidationResultIdentifier,
        )
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        try:
            suite = _registered_suite(spec)
            results = [ExpectationValidationResult(
                success=False,
                expectation_config=ExpectationConfiguration(type=raw["type"], kwargs=raw.get("kwargs") or {},
                                                            meta=raw.get("meta")),
                exception_info={"raised_exception": True, "exception_message": message, "exception_traceback": None},
            ) for raw in suite["expectations"]]
            count = len(results)
            validation = ExpectationSuiteValidationResult(
                success=False, results=results, suite_name=spec.name,
                statistics={"evaluated_expectations": count, "successful_expectations": 0,
                            "unsuccessful_expectations": count, "success_percent": 0.0},
                meta={"run_id": run_id, "validation_time": run_id.run_time,
                      "great_expectations_version": gx.__version__},
            )
            key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name=spec.name), run_id,
                                             f"{DATA_SOURCE}-{spec.name}")
            self.context.validation_results_store.set(key, validation)
            self.context.build_data_docs(site_names=[SITE_NAME],
                                         resource_identifiers=[key, ExpectationSuiteIdentifier(name=spec.name)])
            return self._page(key)
        except Exception as exc:  # the page is a convenience; the warehouse rows are the record
            log.warning("no Data Docs page for crashed validation %s: %s", run_id.run_name, exc)
            return None


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


# --- Data Docs: a file-backed GX context and its site -------------------------------------------------

def gx_context(settings: Settings):
    """GX's file-backed context in <warehouse folder>/gx (suites, validation definitions, checkpoints,
    validation results), with one Data Docs site: data_docs_folder(settings).

    The suites in expectations/*.json stay the source of truth: validate registers them again here on
    each run. The context holds no credentials: its only data source is a pandas frame per suite.
    """
    import great_expectations as gx

    context = gx.get_context(mode="file", project_root_dir=str(settings.warehouse_path.parent))
    wanted = {"data_docs_sites": {SITE_NAME: _site_config(data_docs_folder(settings))},
              "progress_bars": {"globally": False, "metric_calculations": False}}
    if any(getattr(context.variables, name) != value for name, value in wanted.items()):
        for name, value in wanted.items():
            setattr(context.variables, name, value)
        context.variables.save()
    return context


SITE_NAME = "selfmodel"
DATA_SOURCE = "warehouse"
_VIEWS = "selfmodel.data_docs_views"


def _site_config(docs: Path) -> dict:
    """A static site in `docs` (index.html, expectations/, validations/, static/): GX's builder, with views
    that compile their templates once per process and no profiling section (we do not profile)."""
    page_view = {"module_name": _VIEWS, "class_name": "PageView"}
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": INDEX_LIMIT,
                               "view": {"module_name": _VIEWS, "class_name": "IndexPageView"}},
        "site_section_builders": {"expectations": {"view": page_view}, "validations": {"view": page_view},
                                  "profiling": "None"},
    }


_SEVERITY_NOTES = {"block": "Severity: block (a failure stops the publish).",
                   "warn": "Severity: warn (a failure asks someone to look)."}


def _registered_suite(spec: SuiteSpec) -> dict:
    """The suite as registered in GX: the file, with each expectation's severity first in its notes (GX
    shows notes on the suite page; it shows no severity of its own, and no notes on validation pages)."""
    raw = json.loads(json.dumps(spec.raw))
    for expectation, severity in zip(raw["expectations"], spec.severities):
        notes = expectation.get("notes")
        notes = [notes] if isinstance(notes, str) else list(notes or [])
        expectation["notes"] = [_SEVERITY_NOTES[severity], *notes]
    raw["meta"] = {**(raw.get("meta") or {}), _FINGERPRINT: _fingerprint(spec)}
    return raw


_FINGERPRINT = "selfmodel_registered_from"


def _fingerprint(spec: SuiteSpec) -> str:
    """What a registered suite was made from: the file's content, its severities' notes, this GX version."""
    import hashlib

    from great_expectations import __version__ as gx_version

    made_from = json.dumps([spec.raw, _SEVERITY_NOTES, gx_version], sort_keys=True)
    return hashlib.sha256(made_from.encode()).hexdigest()


def _data_source(context):
    try:
        return context.data_sources.get(DATA_SOURCE)
    except (KeyError, ValueError, LookupError):
        return context.data_sources.add_pandas(DATA_SOURCE)


def prune_data_docs(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Make the site show only validations whose page the warehouse links (expectation_runs.data_docs):
    the stored GX results of the others (a forgotten user's, selfmodel.forget) are deleted, and the site
    rebuilt without them. Returns how many results were deleted."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    linked = {row["validation_id"] for row in run_dicts(con, "expectation_runs_linked_pages")}
    context = gx_context(settings)
    store = context.validation_results_store
    removed = 0
    for key in store.list_keys():
        if key.run_id.run_name not in linked:
            store.remove_key(key)
            removed += 1
    # Rebuilding one suite page rebuilds the index too, which drops the pages of deleted results.
    suites = context.suites.all()
    if suites:
        context.build_data_docs(site_names=[SITE_NAME],
                                resource_identifiers=[ExpectationSuiteIdentifier(name=suites[0].name)])
    return removed
