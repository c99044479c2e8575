"""One typed settings object, read from one YAML file plus environment overrides.

Resolution order for the file: an explicit path (``--config``), then ``SELFMODEL_CONFIG``, then
``selfmodel.yaml`` in the current directory. Relative paths inside the file are relative to the file,
so a config works from any working directory. Environment variables ``SELFMODEL__SECTION__KEY``
override single values (for example ``SELFMODEL__WAREHOUSE__PATH=/data/wh.duckdb``).
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator,
)

from selfmodel.events import CANONICAL_FIELDS, DEFAULT_KINDS, json_path, json_path_steps

DEFAULT_CONFIG_NAME = "selfmodel.yaml"
CONFIG_ENV_VAR = "SELFMODEL_CONFIG"
OVERRIDE_ENV_PREFIX = "SELFMODEL__"

SourceFormat = Literal["jsonl", "csv", "parquet", "stackexchange", "convai2", "chat", "postgres"]


def _environment_variable_name(value: str | None, example: str) -> str | None:
    """A setting naming an environment variable (that holds a secret): a name, never the secret itself."""
    if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"must be the name of an environment variable, such as {example}")
    return value


def _prefect_block_name(value: str | None) -> str | None:
    """A setting naming a Prefect block: lowercase letters, digits and dashes."""
    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
        raise ValueError("must be a Prefect block name (lowercase letters, digits and '-')")
    return value


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
    return value


# An IANA time zone name, checked when the config loads.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the field and the problem."""


class StrictModel(BaseModel):
    # A typo in a config key must fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseSettings(StrictModel):
    path: Path = Path(".selfmodel/warehouse.duckdb")
    # Memory DuckDB may use before spilling to disk; None leaves DuckDB's default (80 % of RAM).
    memory_limit: str | None = None
    # A read-only copy for analysts, replaced atomically after each flow's write step (docs/reference.md "Querying
    # the warehouse"); analysts never open the live file, so neither side waits for the other. null: off.
    analyst_copy: Path | None = Path(".selfmodel/analyst/warehouse.duckdb")


class TimestampHints(StrictModel):
    """How to read a source's timestamps when they are not self-describing."""

    # Zone of timestamps written without one (Stack Exchange and ConvAI2 dumps are UTC).
    timezone: TimeZoneName = "UTC"
    # Numbers are epoch seconds or milliseconds; "auto" decides per value by magnitude.
    epoch_unit: Literal["auto", "s", "ms"] = "auto"
    # An strptime format (DuckDB dialect) tried when ISO-8601 parsing fails, e.g. "%d/%m/%Y %H:%M".
    format: str | None = None


_json_path_lock = threading.Lock()
# JSON path -> why ingest could not use it (None: it can); filled by _check_json_paths.
_json_path_problems: dict[str, str | None] = {}


def _check_json_paths(paths: list[str]) -> None:
    """Ask DuckDB whether it accepts each path as ingest uses it (one of a list of paths).

    DuckDB itself keeps the grammar exactly that of ingest's json_extract(doc, $paths). One in-memory
    connection checks all of a source's paths and is closed at once: one kept until exit makes
    DuckDB's bindings report leaks on stderr.
    """
    with _json_path_lock:
        unchecked = [path for path in dict.fromkeys(paths) if path not in _json_path_problems]
        if not unchecked:
            return
        import duckdb  # not at the top: most configs map no JSON path, and every command loads the config

        from warehouse.db import load_sql

        with duckdb.connect() as con:
            for path in unchecked:
                try:
                    con.execute(load_sql("check_json_path"), {"path": path}).fetchall()
                except duckdb.Error as exc:
                    message = str(exc).removeprefix("Binder Error: ")
                    if "wildcards" in message:
                        message = "a mapping takes one value; wildcards ([*], .*, ..) select many"
                    _json_path_problems[path] = message
                else:
                    _json_path_problems[path] = None


def _needs_checking(column: str) -> bool:
    """A JSON path, or a column name with a character DuckDB's path syntax could read as more than a name
    (a plain name like `user_id` or `event time` is always one key, and needs no DuckDB)."""
    return column.startswith("$") or re.fullmatch(r"[A-Za-z0-9_ .-]+", column) is None


def _mapped_column(value: str) -> str:
    if value == "":
        raise ValueError("must name a column, or a JSON path starting with '$'")
    if _needs_checking(value):
        path = json_path(value)  # what ingest asks DuckDB for: a plain name too becomes a path
        _check_json_paths([path])
        problem = _json_path_problems[path]
        if problem:
            what = "JSON path" if value.startswith("$") else "column name"
            raise ValueError(f"invalid {what} {value!r}: {problem}")
    return value


# A source column, or a JSON path ("$.a.b") into nested records; checked when the config loads.
MappedColumn = Annotated[str, AfterValidator(_mapped_column)]


# The roles of the OpenAI chat format; a chat source's `roles` maps other names onto them.
ChatRole = Literal["user", "assistant", "system", "developer", "tool"]
# What a format chat source's `mapping` and `defaults` may name: the conversation's own fields (docs/reference.md "Chat logs").
CHAT_CONVERSATION_FIELDS = ("user_id", "session_id", "occurred_at", "rating")


def _chat_path(value: str) -> str:
    if value == "":
        raise ValueError("must name a key, or a JSON path starting with '$'")
    json_path_steps(value)
    return value


ChatPath = Annotated[str, AfterValidator(_chat_path)]


class ChatSettings(StrictModel):
    """Format chat: where a conversation keeps its messages and how a message is written (paths are keys or
    JSON paths of .key, ."key" and [n] steps; the message paths are inside one message)."""

    messages: ChatPath = "messages"
    role: ChatPath = "role"
    content: ChatPath = "content"
    # A message's own time and its feedback (a thumbs or a score); None: messages carry none.
    occurred_at: ChatPath | None = None
    rating: ChatPath | None = None
    # Role names beside the standard ones (user, assistant, system, developer, tool), e.g. ShareGPT's
    # {human: user, gpt: assistant}.
    roles: dict[str, ChatRole] = Field(default_factory=dict)


class PostgresSettings(StrictModel):
    """Format postgres: where the rows are and how to read them on from where the last batch stopped (docs/reference.md
    "Sources in PostgreSQL and object storage"). The connection string is never in the config: `dsn_env` names
    the environment variable that holds it, or `dsn_secret_block` a Prefect Secret block."""

    dsn_env: str | None = None
    dsn_secret_block: str | None = None
    # One of: a table or view (`schema.name` allowed), or a query whose rows are read.
    table: str | None = None
    query: str | None = None
    # A column whose values only grow (an id, an updated-at time): each batch reads rows from the stored
    # watermark minus `lookback` on; rows read again are duplicates by event id, never loaded twice.
    cursor: str
    # How far behind the watermark to read again, in the cursor's unit: seconds for a time, values for a number.
    lookback: float = Field(default=0.0, ge=0)
    # events: a row is one event (mapped as CSV columns are); chat: a row is a conversation (the `chat` settings).
    rows: Literal["events", "chat"] = "events"
    statement_timeout_seconds: float = Field(default=300.0, gt=0)
    connect_timeout_seconds: int = Field(default=10, gt=0)

    @field_validator("dsn_env")
    @classmethod
    def _dsn_variable_name(cls, value: str | None) -> str | None:
        # A connection string pasted here would sit in the config, and in the error naming an unset variable.
        return _environment_variable_name(value, "SELFMODEL_PG_DSN")

    @field_validator("dsn_secret_block")
    @classmethod
    def _dsn_block_name(cls, value: str | None) -> str | None:
        return _prefect_block_name(value)

    @model_validator(mode="after")
    def _one_of_each(self) -> "PostgresSettings":
        if (self.dsn_env is None) == (self.dsn_secret_block is None):
            raise ValueError("set exactly one of dsn_env (an environment variable) and dsn_secret_block (a Prefect "
                             "Secret block) for the connection string; never the string itself")
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table and query")
        return self


class SourceSettings(StrictModel):
    name: str
    format: SourceFormat
    # A file, folder or glob; or an object storage URL (s3://, gs://, az://, https://). None for format postgres.
    path: str | None = None
    # Format postgres only.
    postgres: PostgresSettings | None = None
    # canonical field -> source column. "$.a.b" is a JSON path into nested records.
    mapping: dict[str, MappedColumn] = Field(default_factory=dict)
    # canonical field -> constant used when the record has no value, e.g. {kind: message}.
    defaults: dict[str, str] = Field(default_factory=dict)
    timestamps: TimestampHints = TimestampHints()
    # Stack Exchange: accounts whose posts are written by software, not people (-1 is Community).
    bot_user_ids: list[str] = Field(default_factory=lambda: ["-1"])
    # CSV only (files are UTF-8; a byte-order mark is skipped).
    csv_delimiter: str = ","
    # Format chat only: one record is one conversation (docs/reference.md "Chat logs").
    chat: ChatSettings = ChatSettings()

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("must use only letters, digits, '_', '-' and '.'")
        return value

    @field_validator("mapping", mode="before")
    @classmethod
    def _check_json_paths_at_once(cls, value: Any) -> Any:
        # One DuckDB connection for all of the source's paths; each is then judged on its own (MappedColumn).
        if isinstance(value, dict):
            _check_json_paths([json_path(column) for column in value.values()
                               if isinstance(column, str) and column and _needs_checking(column)])
        return value

    @field_validator("mapping", "defaults")
    @classmethod
    def _keys_are_canonical(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown canonical field(s) {unknown}; expected some of {list(CANONICAL_FIELDS)}"
            )
        return value

    @field_validator("csv_delimiter")
    @classmethod
    def _single_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("must be exactly one character")
        return value

    @property
    def rows_are_conversations(self) -> bool:
        """Format chat, or a postgres table of conversations: one record becomes many events."""
        return self.format == "chat" or (self.postgres is not None and self.postgres.rows == "chat")

    @model_validator(mode="after")
    def _path_or_postgres(self) -> "SourceSettings":
        if self.format == "postgres":
            if self.postgres is None or self.path is not None:
                raise ValueError(f"source {self.name!r}: format postgres takes a `postgres` section, not a path")
        elif self.postgres is not None or not self.path:
            raise ValueError(f"source {self.name!r}: format {self.format} takes a path (no `postgres` section)")
        else:
            from selfmodel.sources.remote import credentials_in, is_remote

            if is_remote(self.path) and credentials_in(self.path):
                # Not quoted: the URL holds the secret.
                raise ValueError(f"source {self.name!r}: the path URL carries a credential (a user, password or "
                                 "query); give storage credentials through the environment or the storage "
                                 "tool's config, never in selfmodel.yaml")
        return self

    @model_validator(mode="after")
    def _chat_fields(self) -> "SourceSettings":
        if not self.rows_are_conversations:
            if "chat" in self.model_fields_set:
                raise ValueError(f"source {self.name!r}: `chat` settings are for format chat only")
            return self
        for setting in ("mapping", "defaults"):
            others = sorted(set(getattr(self, setting)) - set(CHAT_CONVERSATION_FIELDS))
            if others:
                raise ValueError(
                    f"source {self.name!r}: format chat takes {setting} for {', '.join(CHAT_CONVERSATION_FIELDS)} "
                    f"only (the conversation's fields; messages are read through `chat`), not {', '.join(others)}")
        for field, column in self.mapping.items():
            try:
                json_path_steps(column)
            except ValueError as exc:
                raise ValueError(f"source {self.name!r}: mapping.{field}: {exc}") from None
        return self


class IngestSettings(StrictModel):
    # Events before this instant are implausible for an interaction log and are quarantined.
    min_occurred_at: datetime = datetime(1990, 1, 1, tzinfo=timezone.utc)
    # Events later than now + this tolerance are quarantined as from the future (clock skew).
    max_clock_skew_seconds: float = Field(default=300.0, ge=0)
    # A record (one line) larger than this is quarantined rather than parsed.
    max_record_bytes: int = Field(default=1_000_000, gt=0)
    # Records handed to DuckDB at a time; bounds memory while streaming.
    chunk_records: int = Field(default=100_000, gt=0)
    kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_KINDS))

    @field_validator("min_occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class KeySettings(StrictModel):
    """How evidence for one key family becomes confidence (see docs/reference.md "Belief model")."""

    # "one": a user has one value (role, language); "many": several can hold (topics, facts).
    cardinality: Literal["one", "many"]
    half_life_days: float = Field(gt=0)
    # alpha for one-valued keys, beta for many-valued keys: evidence needed to reach 50 %.
    prior: float = Field(gt=0)


class ExtractorSettings(StrictModel):
    # The rule extractors are on unless turned off; the LLM extractor ("llm") is off unless turned on.
    enabled: bool = True
    # Multiplies the weight of every observation the extractor makes.
    weight: float = Field(default=1.0, gt=0)


# The extractor that asks a language model (selfmodel.llm.extraction, settings `llm`); the rule extractors
# are listed in selfmodel.beliefs.extractors.EXTRACTOR_NAMES.
LLM_EXTRACTOR = "llm"


DEFAULT_KEYS = {
    # Topics drift fastest: calibrated with the predictive eval (docs/reference.md "Evaluation").
    "topic": KeySettings(cardinality="many", half_life_days=30, prior=4.0),
    "expertise": KeySettings(cardinality="one", half_life_days=180, prior=2.0),
    "role": KeySettings(cardinality="one", half_life_days=365, prior=2.0),
    "style.verbosity": KeySettings(cardinality="one", half_life_days=60, prior=2.0),
    "style.format": KeySettings(cardinality="many", half_life_days=90, prior=2.0),
    "language": KeySettings(cardinality="one", half_life_days=180, prior=2.0),
    "fact": KeySettings(cardinality="many", half_life_days=365, prior=2.0),
}


class BeliefSettings(StrictModel):
    # Default as-of of a refresh: the newest event in the warehouse ("latest_event", right for
    # replayed or historical logs) or the wall clock ("now", right for a live nightly run).
    as_of: Literal["latest_event", "now"] = "latest_event"
    # Only beliefs at or above this confidence are enrichable. With the default priors a user needs
    # three consistent, fresh observations to get there, so one message never is enough.
    serving_threshold: float = Field(default=0.6, gt=0, lt=1)
    taxonomy_path: str | None = None  # topic keywords; default: the packaged topics.yaml
    roles_path: str | None = None  # role lexicon; default: the packaged roles.yaml
    # Key families (expertise@<topic> uses "expertise"). Entries here replace the defaults one by one.
    keys: dict[str, KeySettings] = Field(default_factory=lambda: dict(DEFAULT_KEYS))
    extractors: dict[str, ExtractorSettings] = Field(default_factory=dict)
    # Worker processes for extraction when at least 50,000 events per worker are queued (1 = in-process).
    extract_workers: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)), ge=1)
    # Scale-out of the refresh_beliefs flow (and so the nightly run): users are split by a hash of user_id
    # into this many shards, extracted in parallel as Dask tasks (prefect-dask). 1 = no Dask at all.
    shards: int = Field(default=1, ge=1, le=4096)
    # The Dask scheduler to run shards on (tcp://host:8786); null = a LocalCluster on this machine. Shards
    # are written beside the warehouse, so on a multi-machine cluster that folder must be shared storage.
    dask_address: str | None = None

    @field_validator("keys")
    @classmethod
    def _merge_with_default_keys(cls, value: dict[str, KeySettings]) -> dict[str, KeySettings]:
        return {**DEFAULT_KEYS, **value}

    @field_validator("extractors", mode="before")
    @classmethod
    def _llm_extractor_off_unless_enabled(cls, value: Any) -> Any:
        # The LLM extractor sends text to an outside service and costs money: listed without `enabled`, it is off.
        listed = value.get(LLM_EXTRACTOR) if isinstance(value, dict) else None
        if isinstance(listed, dict) and "enabled" not in listed:
            value = {**value, LLM_EXTRACTOR: {**listed, "enabled": False}}
        return value

    @field_validator("extractors")
    @classmethod
    def _known_extractors(cls, value: dict[str, ExtractorSettings]) -> dict[str, ExtractorSettings]:
        from selfmodel.beliefs.extractors import EXTRACTOR_NAMES

        known = [*EXTRACTOR_NAMES, LLM_EXTRACTOR]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown extractor(s) {unknown}; known: {known}")
        return value

    def extractor(self, name: str) -> ExtractorSettings:
        return self.extractors.get(name, ExtractorSettings(enabled=name != LLM_EXTRACTOR))


class PredictiveEvalSettings(StrictModel):
    # Beliefs are computed as of (data end - cutoff_days) and checked against the next horizon_days.
    cutoff_days: float = Field(default=14, gt=0)
    horizon_days: float = Field(default=14, gt=0)
    # A backtest: beliefs are judged at this many cutoffs, the newest one above, each older one
    # backtest_every_days before the next (cutoffs at or before the first event are skipped).
    backtest_cutoffs: int = Field(default=4, ge=1)
    backtest_every_days: float = Field(default=14, gt=0)
    # Size of the random sample of active users that stands for "production" beside the demo users.
    production_sample: int = Field(default=200, gt=0)
    seed: int = 20181122
    # The source whose data end sets the cutoff and whose window observations are checked; null = all
    # sources. Set it when sources cover different periods: the newest one's end would leave the others
    # with an empty window.
    source: str | None = None


class EnrichmentEvalSettings(StrictModel):
    """The enrichment judge (selfmodel.evals.enrichment, docs/reference.md "Enrichment judge"): the endpoint and prices are
    the `llm` section's."""

    # Run it with every `selfmodel eval` (and the nightly); off: only with `--suite enrichment`.
    enabled: bool = False
    # Users judged, one held-out query each (each call counts against llm.max_cost_usd_per_run).
    sample_size: int = Field(default=50, ge=1)
    seed: int = 20181122
    # The models that answer and that judge; null: llm.model.
    answer_model: str | None = Field(default=None, min_length=1)
    judge_model: str | None = Field(default=None, min_length=1)
    # Share of judged queries judged again with the answers' order swapped (the judge's self-agreement).
    rejudge_fraction: float = Field(default=0.2, ge=0, le=1)
    max_output_tokens: int = Field(default=400, ge=16)
    # Beliefs in the enriched query, as BeliefStore.enrich's max_beliefs.
    max_beliefs: int = Field(default=12, ge=1)


class EvalSettings(StrictModel):
    # Folder (relative to the config) with bar.yaml, the labeled case files and demo_users.yaml.
    path: str = "expectations"
    predictive: PredictiveEvalSettings = PredictiveEvalSettings()
    enrichment: EnrichmentEvalSettings = EnrichmentEvalSettings()
    # Significance level of regression tests and number of bootstrap resamples.
    alpha: float = Field(default=0.05, gt=0, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=200)


ChatService = Literal["slack", "teams", "discord"]


class ChatChannelSettings(StrictModel):
    """A chat tool that gets alerts in its own message format, sent through apprise (selfmodel/alerts.py).

    The URL (apprise's `slack://…`, `workflows://…` for Microsoft Teams, `discord://…`, or the webhook URL the
    tool gave you) holds the tool's token, so it never sits in this file: `url_env` names an environment
    variable holding it, `url_secret_block` a Prefect Secret block; it is read only when an alert is sent.
    """

    service: ChatService
    url_env: str | None = None
    url_secret_block: str | None = None

    @field_validator("url_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        return _environment_variable_name(value, "SLACK_ALERTS_URL")

    @field_validator("url_secret_block")
    @classmethod
    def _block_name(cls, value: str | None) -> str | None:
        return _prefect_block_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> "ChatChannelSettings":
        if (self.url_env is None) == (self.url_secret_block is None):
            raise ValueError(f"{self.service}: give one of url_env, url_secret_block (the URL holds a token: "
                             "never the URL itself)")
        return self

    def url(self, owner: str, environ: Mapping[str, str] | None = None) -> str:
        """The apprise URL, read when an alert is sent; missing or empty is a ConfigError that never quotes it."""
        if self.url_env is not None:
            where = f"the environment variable {self.url_env} ({self.service} url_env of owner {owner!r})"
            return environment_secret(self.url_env, where, f"the {self.service} URL", environ).strip()
        where = f"the Prefect Secret block {self.url_secret_block!r} ({self.service} url_secret_block of owner {owner!r})"
        value = _prefect_secret(self.url_secret_block, where)
        if not value or not value.strip():
            raise ConfigError(f"{where} is not set (or empty): set it to the {self.service} URL")
        return value.strip()


class OwnerSettings(StrictModel):
    """Someone who hears about a suite's incidents: by email, by webhook, in chat tools, or several of these.

    For Slack, Microsoft Teams and most chat tools the webhook URL *is* the credential, so it is best kept
    out of this file: `webhook_env` names an environment variable holding it, `webhook_secret_block` a
    Prefect Secret block. `webhook` (the URL itself) still works. Whichever is used, the URL is held as a
    secret and only ever shown redacted (scheme and host: selfmodel.redact).
    """

    name: str
    email: str | None = None
    # An HTTP(S) URL that receives a JSON POST per alert (see selfmodel/alerts.py for the body).
    webhook: SecretStr | None = None
    # The name of an environment variable holding that URL, read when an alert is sent.
    webhook_env: str | None = None
    # The name of a Prefect Secret block holding that URL (`prefect block create secret`), read when sent.
    webhook_secret_block: str | None = None
    # Slack, Microsoft Teams, Discord: each gets messages in its own format (at most one entry per service).
    chat: list[ChatChannelSettings] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_is_plain(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.@ -]+", value) or not value.strip():
            raise ValueError("must use only letters, digits, spaces and '_', '-', '.', '@'")
        return value

    @field_validator("email")
    @classmethod
    def _looks_like_an_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+", value):
            raise ValueError("must be one address like 'ana@example.org'")
        return value

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_http_url(value.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("webhook_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        return _environment_variable_name(value, "SLACK_WEBHOOK_URL")

    @field_validator("webhook_secret_block")
    @classmethod
    def _block_name(cls, value: str | None) -> str | None:
        return _prefect_block_name(value)

    @model_validator(mode="after")
    def _reachable(self) -> "OwnerSettings":
        given = [name for name in ("webhook", "webhook_env", "webhook_secret_block") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"owner {self.name!r}: give one of webhook, webhook_env, webhook_secret_block, not "
                             + " and ".join(given))
        if self.email is None and not given and not self.chat:
            raise ValueError(f"owner {self.name!r} needs an email or a webhook or a chat (or several)")
        services = [chat.service for chat in self.chat]
        repeated = sorted({service for service in services if services.count(service) > 1})
        if repeated:
            raise ValueError(f"owner {self.name!r}: one chat entry per service; repeated: {repeated}")
        return self

    def chat_of(self, service: str) -> "ChatChannelSettings | None":
        return next((chat for chat in self.chat if chat.service == service), None)

    @property
    def has_webhook(self) -> bool:
        return any(value is not None for value in (self.webhook, self.webhook_env, self.webhook_secret_block))

    def webhook_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The webhook URL, read when an alert is sent. A missing variable or block, or one that does not
        hold an http(s) URL, is a ConfigError whose message never quotes what it holds."""
        if self.webhook is not None:
            return self.webhook.get_secret_value()
        if self.webhook_env is not None:
            where = f"the environment variable {self.webhook_env} (webhook_env of owner {self.name!r})"
            value = environment_secret(self.webhook_env, where, "the webhook URL", environ)
        elif self.webhook_secret_block is not None:
            where = (f"the Prefect Secret block {self.webhook_secret_block!r} "
                     f"(webhook_secret_block of owner {self.name!r})")
            value = _prefect_secret(self.webhook_secret_block, where)
            if not value:
                raise ConfigError(f"{where} is not set (or empty): set it to the webhook URL")
        else:
            raise ConfigError(f"owner {self.name!r} has no webhook")
        if not is_http_url(value.strip()):
            raise ConfigError(f"{where} does not hold an http:// or https:// URL")
        return value.strip()


def environment_secret(variable: str, where: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    """A secret read from an environment variable when it is used: missing or empty is a ConfigError saying
    `where` it was looked for and `what` to set it to, never "" and never the value."""
    value = (os.environ if environ is None else environ).get(variable)
    if not value:
        raise ConfigError(f"{where} is not set (or empty): set it to {what}")
    return value


def is_http_url(value: str) -> bool:
    return re.match(r"https?://[^\s/]+", value) is not None and not re.search(r"\s", value)


def _prefect_secret(block_name: str, where: str) -> str | None:
    """The value of a Prefect Secret block (Prefect is imported only here, when a webhook needs it)."""
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(block_name, _sync=True).get()
    except Exception as exc:  # not found, no API, wrong block type: say which, never what it holds
        raise ConfigError(f"{where} cannot be read: {type(exc).__name__}") from None
    return value if isinstance(value, str) else None


class SmtpSettings(StrictModel):
    host: str
    port: int = Field(default=587, gt=0, le=65535)
    # starttls (port 587), ssl (port 465), or none (plain SMTP: only for a relay on a trusted network).
    security: Literal["starttls", "ssl", "none"] = "starttls"
    verify_certificates: bool = True
    username: str | None = None
    # Name of the environment variable that holds the password; the password never sits in the file.
    password_env: str | None = None
    from_address: str
    # How long connecting and each exchange with the server may take: a server that accepts the connection
    # and never answers must not hold the nightly run (and its writer lock) forever.
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _login_is_complete(self) -> "SmtpSettings":
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (set both, or neither to send without login)")
        return self

    def password(self, environ: dict[str, str] | None = None) -> str | None:
        """The SMTP password, read when an email is sent; a missing variable is a ConfigError, never ""."""
        if self.password_env is None:
            return None
        where = f"alerts.smtp.password_env names the environment variable {self.password_env}, which"
        return environment_secret(self.password_env, where, "the SMTP password", environ)


class AlertSettings(StrictModel):
    # eval suite name -> its owners. A failing suite with no owners alerts no one (and says so in the log).
    owners: dict[str, list[OwnerSettings]] = Field(default_factory=dict)
    smtp: SmtpSettings | None = None
    # Extra attempts per alert within one run, and the pause between them. Alerts still undelivered
    # after that stay recorded and are tried again by the next run.
    retries: int = Field(default=2, ge=0)
    retry_delay_seconds: float = Field(default=5.0, ge=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _owners_are_reachable(self) -> "AlertSettings":
        for suite, owners in self.owners.items():
            names = [owner.name for owner in owners]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"owners of suite {suite!r} must have unique names; repeated: {repeated}")
            if self.smtp is None and any(owner.email for owner in owners):
                raise ValueError(f"an owner of suite {suite!r} has an email, so alerts.smtp must be set")
        return self

    def owners_of(self, suite: str) -> list[OwnerSettings]:
        return list(self.owners.get(suite, []))


class QualitySettings(StrictModel):
    """Data-quality expectations (Great Expectations suites, expectations/*.json)."""

    # Folder of the suite files, relative to the config.
    path: str = "expectations"
    # Share of a batch's records quarantined above which the quarantine_rate suite warns, and blocks.
    quarantine_rate_warn: float = Field(default=0.05, ge=0, le=1)
    quarantine_rate_block: float = Field(default=0.5, ge=0, le=1)
    # Where validation pages (HTML) go; default: data_docs/ beside the warehouse file.
    data_docs_path: str | None = None

    @model_validator(mode="after")
    def _warn_before_block(self) -> "QualitySettings":
        if self.quarantine_rate_warn > self.quarantine_rate_block:
            raise ValueError("quarantine_rate_warn must not exceed quarantine_rate_block")
        return self


class SnapshotSettings(StrictModel):
    """Published belief snapshots (selfmodel.publish; read online by warehouse.online.BeliefStore)."""

    path: Path = Path(".selfmodel/snapshots")
    # Published versions kept (the current one is always kept, also after a rollback).
    keep: int = Field(default=7, ge=2)
    # Missing eval or expectation runs fail the audit; off only for a first run without evals.
    require_eval: bool = True
    # The latest eval run of each suite must have ended after the refresh whose beliefs are published.
    require_fresh_eval: bool = True
    # Eval suites that must have run (and passed) for a publish, e.g. [predictive, labeled].
    required_eval_suites: list[str] = Field(default_factory=list)
    # Beliefs below this confidence are left out of the snapshot (0: every belief in force). Readers
    # cannot ask for less than this.
    min_confidence: float = Field(default=0.0, ge=0, lt=1)


class NightlySettings(StrictModel):
    """The nightly run (flows/nightly.py) as `selfmodel serve` schedules it; prefect.yaml has its own copy."""

    # Standard 5-field cron, read in `timezone` (an IANA name): 02:00 every night.
    cron: str = "0 2 * * *"
    timezone: TimeZoneName = "UTC"
    # How long a run waits for another writer (a nightly still running) or another process holding the
    # warehouse file open (a DuckDB shell, a notebook) before it exits without writing (exit 3).
    lock_wait_seconds: float = Field(default=0.0, ge=0)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a 5-field cron expression such as '0 2 * * *'")
        return value


class CalibrationSettings(StrictModel):
    """`selfmodel calibrate` (docs/reference.md "Calibration"): the belief model fitted to the warehouse's own history.

    Windows go back from the evaluation's earliest cutoff (the predictive eval's backtest), each as long as
    the eval's horizon: first `validation_windows` to check the fit on, then before them `train_windows` to fit
    on. Nothing observed after the evaluation's earliest cutoff is read."""

    # Weekly origins of two-week windows (overlapping): on the bundled sample, 12 + 4 of them fit topic to a validation
    # ECE of 0.040 where 6 + 2 fortnightly ones reached 0.052 (more origins, more judgements, the same months).
    train_windows: int = Field(default=12, ge=1, le=200)
    validation_windows: int = Field(default=4, ge=1, le=200)
    every_days: float = Field(default=7, gt=0)
    # A key family with fewer judged beliefs in the training windows keeps its parameters ("too small to fit");
    # one with fewer in the validation windows is fitted but not adopted.
    min_judged: int = Field(default=100, ge=1)
    min_validation_judged: int = Field(default=30, ge=1)
    # Key families never fitted (they keep beliefs.keys): for when "held in the next window" is not what the
    # product means by the family, e.g. ConvAI2's personas, assigned afresh to every dialog, make any stated
    # fact look fleeting, where a real user's "i have two dogs" lasts.
    exclude: list[str] = Field(default_factory=list)
    # Run `calibrate` as a nightly step after the refresh; what it adopts is re-folded before the evaluation.
    nightly: bool = False


class LLMSettings(StrictModel):
    """An OpenAI-compatible chat endpoint (docs/reference.md "LLM extractor"): OpenAI, Azure OpenAI, or a local server
    (vLLM, llama.cpp, Ollama). The API key is read when a request is made, from the environment variable
    `api_key_env` or the Prefect Secret block `api_key_secret_block`; it is never in this file, a table or a log."""

    base_url: str = "https://api.openai.com/v1"
    model: str = Field(min_length=1)
    # Azure OpenAI's dated API (…/openai/deployments/<name>) needs an api-version query; its v1 API does not.
    api_version: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    api_key_secret_block: str | None = None
    # Estimated spend per run (prices below, as configured: never fetched). At the cap, extraction stops cleanly
    # and what is left is extracted on the next run.
    max_cost_usd_per_run: float = Field(default=1.0, ge=0)
    price_per_1m_input_tokens: float = Field(ge=0)
    price_per_1m_output_tokens: float = Field(ge=0)
    # More messages to extract than this in one run go through the Batch API (upload, poll, fetch); fewer
    # are sent as direct requests, `concurrency` at a time.
    batch_threshold: int = Field(default=1000, ge=1)
    # How long a run waits for a batch it submitted (polling every batch_poll_seconds); a batch not done by
    # then is collected by a later run.
    batch_wait_seconds: float = Field(default=600, ge=0)
    batch_poll_seconds: float = Field(default=15, gt=0)
    timeout_seconds: float = Field(default=60, gt=0)
    # Retries of a request on a rate limit (429), a server error (5xx), a timeout or a dropped connection,
    # with exponential backoff (honouring Retry-After). Items that still fail are retried on the next run.
    max_retries: int = Field(default=3, ge=0, le=10)
    concurrency: int = Field(default=4, ge=1, le=64)
    # Bounds on one request: the reply's tokens, and the message's characters (a longer message is cut).
    max_output_tokens: int = Field(default=600, ge=16)
    max_message_chars: int = Field(default=4000, ge=100)

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        problem = "must be an http:// or https:// URL, such as https://api.openai.com/v1"
        if not is_http_url(value):
            raise ValueError(problem)
        try:  # a bracket left open or a port out of range would only fail at the first request, as a traceback
            parts = urlsplit(value)
            parts.port  # noqa: B018 (reading it validates it)
        except ValueError as exc:
            raise ValueError(f"{problem}: {exc}") from None
        if not parts.hostname:
            raise ValueError(f"{problem}: it names no host")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _key_variable_name(cls, value: str | None) -> str | None:
        return _environment_variable_name(value, "OPENAI_API_KEY")

    @field_validator("api_key_secret_block")
    @classmethod
    def _key_block_name(cls, value: str | None) -> str | None:
        return _prefect_block_name(value)

    @model_validator(mode="after")
    def _one_key_source(self) -> "LLMSettings":
        if self.api_key_env is not None and self.api_key_secret_block is not None:
            raise ValueError("give one of api_key_env and api_key_secret_block, not both "
                             "(api_key_env defaults to OPENAI_API_KEY: set it to null to use the block)")
        return self

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key, read now; None when neither a variable nor a block is configured (a local server that
        needs no key). A missing or empty variable or block is a ConfigError that never quotes a value."""
        if self.api_key_env is not None:
            where = f"llm.api_key_env names the environment variable {self.api_key_env}, which"
            return environment_secret(self.api_key_env, where, "the API key of " + _host_of(self.base_url), environ)
        if self.api_key_secret_block is not None:
            where = f"the Prefect Secret block {self.api_key_secret_block!r} (llm.api_key_secret_block)"
            value = _prefect_secret(self.api_key_secret_block, where)
            if not value or not value.strip():
                raise ConfigError(f"{where} is not set (or empty): set it to the API key")
            return value.strip()
        return None


def _host_of(url: str) -> str:
    from selfmodel.redact import redact_url

    return redact_url(url).removesuffix("/…")


class Settings(StrictModel):
    warehouse: WarehouseSettings = WarehouseSettings()
    sources: list[SourceSettings] = Field(default_factory=list)
    ingest: IngestSettings = IngestSettings()
    beliefs: BeliefSettings = BeliefSettings()
    alerts: AlertSettings = AlertSettings()
    eval: EvalSettings = EvalSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    quality: QualitySettings = QualitySettings()
    nightly: NightlySettings = NightlySettings()
    # An OpenAI-compatible endpoint for the LLM extractor (beliefs.extractors.llm); null: none, fully offline.
    llm: LLMSettings | None = None
    # Folder of the config file; relative paths resolve against it. Set by load_settings.
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique_source_names(self) -> "Settings":
        names = [source.name for source in self.sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {duplicated}")
        unknown_families = sorted(set(self.calibration.exclude) - set(self.beliefs.keys))
        if unknown_families:
            raise ValueError(f"calibration.exclude names unknown key families {unknown_families}; "
                             f"known: {sorted(self.beliefs.keys)}")
        if self.beliefs.extractor(LLM_EXTRACTOR).enabled and self.llm is None:
            raise ValueError("beliefs.extractors.llm is enabled, so the llm section (base_url, model, prices...) "
                             "must be set")
        if self.eval.enrichment.enabled and self.llm is None:
            raise ValueError("eval.enrichment is enabled, so the llm section (base_url, model, prices...) must be set")
        predictive_source = self.eval.predictive.source
        if predictive_source is not None and predictive_source not in names:
            raise ValueError(f"eval.predictive.source {predictive_source!r} is not a configured source; "
                             f"known: {names}")
        return self

    def resolve(self, path: str | Path) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    def config_hash(self) -> str:
        """sha256 of the settings that shape results (not where files live), for run records."""
        import hashlib
        import json

        shaping = self.model_dump(mode="json", include={"sources", "ingest", "beliefs"})
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def warehouse_path(self) -> Path:
        return self.resolve(self.warehouse.path)

    @property
    def snapshots_path(self) -> Path:
        return self.resolve(self.snapshots.path)

    @property
    def analyst_copy_path(self) -> Path | None:
        return None if self.warehouse.analyst_copy is None else self.resolve(self.warehouse.analyst_copy)

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (known: {known})")


def find_config_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_CONFIG_NAME)


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """SELFMODEL__WAREHOUSE__PATH=x sets raw['warehouse']['path'] = x (values parsed as YAML scalars)."""
    for name, value in environ.items():
        if not name.startswith(OVERRIDE_ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(OVERRIDE_ENV_PREFIX) :].split("__") if part]
        if not keys:
            continue
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = yaml.safe_load(value) if value else value
    return raw


# Settings whose value may be a credential: an error about them never quotes the value.
_SECRET_SETTING = re.compile(r"pass|secret|token|webhook|dsn|credential|api_?key|auth", re.IGNORECASE)


def _describe(error: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        lines.append(f"  {location}: {message}{_shown_input(problem)}")
    return "\n".join(lines)


def _shown_input(problem: dict) -> str:
    """` (got 'value')`, unless the value could be a secret: a setting that holds one, or an unknown setting
    (a misspelt `password:` is as secret as the real one), and never for whole mappings or lists."""
    given = problem.get("input")
    if given is None or isinstance(given, (dict, list)) or problem["type"] == "extra_forbidden":
        return ""
    # Under alerts anything may be a misplaced credential (a webhook URL given where a list was expected).
    if problem["loc"][:1] == ("alerts",) or any(_SECRET_SETTING.search(str(part)) for part in problem["loc"]):
        return ""
    from selfmodel.redact import redact_urls

    return f" (got {redact_urls(repr(given))})"  # a URL anywhere else still shows only its scheme and host


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, override and validate the config; every failure is a ConfigError with a readable message."""
    environ = dict(os.environ) if environ is None else environ
    config_path = find_config_path(path)
    if not config_path.exists():
        raise ConfigError(
            f"config file {config_path} not found (pass --config PATH or set {CONFIG_ENV_VAR})"
        )
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        # Where and what, never the offending line itself: it may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"config file {config_path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {config_path} is not UTF-8 text") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {config_path} must hold a mapping at the top level")
    if "base_dir" in raw:
        raise ConfigError(f"invalid config {config_path}:\n  base_dir: is set from the file's location, not in the file")
    raw = _apply_env_overrides(raw, environ)
    raw["base_dir"] = config_path.resolve().parent
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(config_path))) from None
