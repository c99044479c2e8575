"""Alerts to the owners of an eval suite: one per incident, a recovery notice when it passes again.

An *incident* opens when a suite's run fails its success bar or regresses while no incident of that
suite is open; every owner hears about it once, on each of their channels, however many nights it keeps
failing. It closes when a later run passes and the recovery notice for it is raised. The state lives in
the `alerts` table alone (migration 0003): an incident is open while it has alerts and no recovery.

Delivery goes through existing integrations, never hand-written SMTP or HTTP: email through prefect-email
(`EmailServerCredentials` + `email_send_message`, with a timeout on the connection it opens), webhooks
through Prefect's `CustomWebhookNotificationBlock`, Slack, Microsoft Teams and Discord through apprise, in
each tool's own message format. A webhook or chat URL is a credential: it is read only when sent, and every
error, log line and table shows it redacted (selfmodel.redact). Each alert (one owner, one channel) is recorded before its first
attempt, and every attempt updates its row (attempts, last_error, delivered_at). One that still fails
after the configured retries stays undelivered in the table and is tried again by the next `notify` or
`retry_undelivered`: it is never dropped. Prefect is imported only when something is delivered.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Literal, Mapping, Protocol

import duckdb

from selfmodel.clock import Clock, SystemClock
from selfmodel.redact import redact_http_client_logs, redact_url, scrub
from selfmodel.settings import AlertSettings, ConfigError, OwnerSettings, Settings, SmtpSettings
from warehouse.db import run, run_dicts

log = logging.getLogger("selfmodel.alerts")
Connection = duckdb.DuckDBPyConnection

AlertKind = Literal["failure", "regression", "recovery"]
ChannelKind = Literal["email", "webhook", "slack", "teams", "discord"]
CHAT_SERVICES: tuple[ChannelKind, ...] = ("slack", "teams", "discord")
# The channel of a row that closes an incident nobody could be told about (see notify).
NO_CHANNEL = "none"
NO_OWNERS = "(no owners)"

# How many worst cases a message lists; the reproduce SQL finds the rest.
MAX_WORST_CASES = 10
MAX_ERROR_CHARS = 500


# --- what a run tells us -------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricChange:
    """One metric that failed the bar or regressed: before (last passing run) -> after (this run)."""

    metric: str
    after: float | None
    before: float | None = None
    # Interval of the change (after - before), e.g. a bootstrap interval; None when not computed.
    interval: tuple[float, float] | None = None
    # The bar's condition when this metric failed it, e.g. ">= 0.8".
    threshold: str | None = None
    p_value: float | None = None


@dataclass(frozen=True)
class WorstCase:
    case_id: str  # a labeled case id, or a slice such as "key=topic"
    detail: str  # what went wrong, readable on its own


@dataclass(frozen=True)
class SuiteOutcome:
    """The verdict of a suite's latest run and what an owner needs to act on it."""

    run_id: str
    bar_failures: tuple[MetricChange, ...] = ()
    regressions: tuple[MetricChange, ...] = ()
    worst_cases: tuple[WorstCase, ...] = ()
    # SQL an owner runs against the warehouse to see the failing cases or slices.
    reproduce_sql: str = ""
    # This run's metric values, shown in the recovery notice.
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    data_as_of: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bar_failures", tuple(self.bar_failures))
        object.__setattr__(self, "regressions", tuple(self.regressions))
        object.__setattr__(self, "worst_cases", tuple(self.worst_cases))
        if not self.healthy and not self.reproduce_sql.strip():
            raise ValueError(f"run {self.run_id}: an alert must say how to reproduce it (reproduce_sql is empty)")

    @property
    def failed_bar(self) -> bool:
        return bool(self.bar_failures)

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def healthy(self) -> bool:
        return not self.failed_bar and not self.regressed

    @classmethod
    def from_run(
        cls,
        run_record: Mapping[str, Any],
        *,
        before: Mapping[str, float | None] | None = None,
        worst_cases: Iterable[WorstCase | Mapping[str, str]] = (),
        reproduce_sql: str = "",
    ) -> "SuiteOutcome":
        """Build the outcome from an `eval_runs` row (as a dict) or an entry of `selfmodel eval --json`.

        `bar` is `{metric: {threshold, op, value, passed}}`, `regressions` is
        `[{metric, before, after, interval: [low, high], p_value}]`; JSON columns may still be text.
        `before` holds the last passing run's metrics, shown beside the values that fail the bar.
        """
        bar = _json_value(run_record.get("bar")) or {}
        regressions = _json_value(run_record.get("regressions")) or []
        metrics = _json_value(run_record.get("metrics")) or {}
        before = before or {}
        failures = tuple(
            MetricChange(
                metric=metric,
                after=check.get("value"),
                before=before.get(metric),
                threshold=f"{check.get('op', '')} {check.get('threshold')}".strip(),
            )
            for metric, check in sorted(bar.items())
            if check.get("passed", False) is False  # None: a key family too small to judge, no failure
        )
        changes = tuple(
            MetricChange(
                metric=entry["metric"],
                before=entry.get("before"),
                after=entry.get("after"),
                interval=tuple(entry["interval"]) if entry.get("interval") is not None else None,
                p_value=entry.get("p_value"),
            )
            for entry in regressions
        )
        cases = tuple(case if isinstance(case, WorstCase) else WorstCase(str(case["case_id"]), str(case["detail"]))
                      for case in worst_cases)
        return cls(
            run_id=str(run_record["run_id"]),
            bar_failures=failures,
            regressions=changes,
            worst_cases=cases,
            reproduce_sql=reproduce_sql,
            metrics=metrics,
            data_as_of=_moment(run_record.get("data_as_of")),
        )


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _moment(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


# --- what was sent ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRecord:
    """One row of `alerts`: one message to one owner on one channel."""

    alert_id: str
    incident_id: str
    suite: str
    kind: AlertKind
    owner: str
    channel: ChannelKind
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    last_error: str | None
    subject: str
    body: str

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None

    def to_json(self) -> dict[str, Any]:
        """The record for `selfmodel eval --json` (the body is long and stays in the table)."""
        return {
            "alert_id": self.alert_id,
            "incident_id": self.incident_id,
            "suite": self.suite,
            "kind": self.kind,
            "owner": self.owner,
            "channel": self.channel,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "subject": self.subject,
        }


@dataclass(frozen=True)
class Incident:
    incident_id: str
    opened_at: datetime
    opened_with: str | None  # subject of the alert that opened it


# --- channels -----------------------------------------------------------------------------------------


class AlertChannel(Protocol):
    """Delivers one alert to one destination, or raises; returning means the receiver accepted it."""

    kind: ChannelKind

    def deliver(self, alert: AlertRecord) -> None: ...


class EmailChannel:
    """Email through prefect-email, one recipient per message (so a refused address always raises)."""

    kind: ChannelKind = "email"

    def __init__(self, smtp: SmtpSettings, to_address: str) -> None:
        self.smtp = smtp
        self.to_address = to_address

    def deliver(self, alert: AlertRecord) -> None:
        from prefect.utilities.asyncutils import run_coro_as_sync
        from prefect_email import email_send_message

        password = self.smtp.password()  # a missing secret is a ConfigError here, at the point of use
        credentials = _timed_credentials_class()(
            timeout_seconds=self.smtp.timeout_seconds,
            smtp_server=self.smtp.host,
            smtp_port=self.smtp.port,
            smtp_type={"starttls": "STARTTLS", "ssl": "SSL", "none": "INSECURE"}[self.smtp.security],
            verify=self.smtp.verify_certificates,
            # prefect-email calls login() whenever a username is set, so leave it None for no login.
            **({"username": self.smtp.username, "password": password} if self.smtp.username else {}),
        )
        # email_send_message is an async Prefect task; .fn is its plain coroutine function, which runs
        # without a flow or an API server. run_coro_as_sync works inside and outside an event loop.
        run_coro_as_sync(
            email_send_message.fn(
                subject=alert.subject,
                msg="",  # no HTML part: the plain-text body is the message
                msg_plain=alert.body,
                email_server_credentials=credentials,
                email_from=self.smtp.from_address,
                email_to=self.to_address,
            )
        )


_TIMED_CREDENTIALS: list[type] = []


def _timed_credentials_class() -> type:
    """prefect-email's EmailServerCredentials, opening its connection with a timeout.

    Its own get_server() calls `SMTP(host, port)` with no timeout: a server that accepts the connection
    and never answers (a firewall, a hung relay) would block the send, and with it the nightly run that
    holds the writer lock, forever. The timeout bounds the connection, the greeting and every exchange after
    it; smtplib raises TimeoutError, which is recorded on the alert and retried like any failed delivery.
    Made once, when the first email is sent (Prefect is imported only then).
    """
    if _TIMED_CREDENTIALS:
        return _TIMED_CREDENTIALS[0]
    import ssl
    from smtplib import SMTP, SMTP_SSL

    from prefect_email import EmailServerCredentials
    from prefect_email.credentials import SMTPServer, SMTPType

    class TimedEmailServerCredentials(EmailServerCredentials):
        """EmailServerCredentials whose server connection has a timeout (never saved as a block)."""

        _block_type_name = "selfmodel Timed Email Server Credentials"
        timeout_seconds: float = 30.0

        def get_server(self) -> SMTP:
            host = self.smtp_server.value if isinstance(self.smtp_server, SMTPServer) else self.smtp_server
            port = self.smtp_port if self.smtp_port is not None else self.smtp_type.value
            timeout = self.timeout_seconds
            if self.smtp_type == SMTPType.INSECURE:
                server = SMTP(host, port, timeout=timeout)
            else:
                context = (ssl.create_default_context() if self.verify
                           else ssl._create_unverified_context(protocol=ssl.PROTOCOL_TLS_CLIENT))
                if self.smtp_type == SMTPType.SSL:
                    server = SMTP_SSL(host, port, context=context, timeout=timeout)
                else:
                    server = SMTP(host, port, timeout=timeout)
                    server.starttls(context=context)
            if self.username is not None:
                server.login(self.username, self.password.get_secret_value())
            return server

    _TIMED_CREDENTIALS.append(TimedEmailServerCredentials)
    return TimedEmailServerCredentials


class WebhookChannel:
    """A JSON POST through Prefect's CustomWebhookNotificationBlock; a non-2xx answer raises.

    The URL is a credential (Slack, Teams and most chat tools put the token in it), so it is read only
    when an alert is sent (`resolve_url`: a config value, an environment variable or a Prefect Secret
    block) and every failure is raised again as WebhookFailed, whose message shows it redacted.
    """

    kind: ChannelKind = "webhook"

    def __init__(self, resolve_url: Callable[[], str], timeout_seconds: float) -> None:
        self.resolve_url = resolve_url
        self.timeout_seconds = timeout_seconds

    def deliver(self, alert: AlertRecord) -> None:
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        url = self.resolve_url()  # a missing secret is a ConfigError here, at the point of use
        redact_http_client_logs()  # httpx logs each request's full URL at INFO
        block = CustomWebhookNotificationBlock(
            name="selfmodel-alerts",
            url=url,
            method="POST",
            json_data=webhook_json(alert),
            timeout=self.timeout_seconds,
            # Owners' webhooks come from our own config and may well be internal services.
            allow_private_urls=True,
        )
        try:
            # _sync=True: inside a running event loop notify() would otherwise return a coroutine that
            # nobody awaits, and the alert would look sent without a request ever being made.
            block.notify(body=alert.body, subject=alert.subject, _sync=True)
        except Exception as exc:
            raise WebhookFailed(describe_webhook_failure(exc, url, self.timeout_seconds)) from None


class WebhookFailed(RuntimeError):
    """A webhook delivery failed; the message names the URL only in its redacted form."""


# The apprise plugin that speaks each tool's format: Slack blocks/attachments, Microsoft Teams (through
# a Power Automate workflow, as Teams webhooks now are) an Adaptive Card, Discord content and embeds.
APPRISE_PLUGINS = {"slack": "NotifySlack", "teams": "NotifyWorkflows", "discord": "NotifyDiscord"}


class ChatChannel:
    """Slack, Microsoft Teams or Discord, in the tool's own message format, through apprise.

    The URL (an apprise URL or the tool's webhook URL) holds the token: it is read only when an alert is
    sent (`resolve_url`: an environment variable or a Prefect Secret block). apprise reports a failure by
    returning False and logging why; those log lines are caught here, scrubbed of every part of the URL, and
    raised as ChatDeliveryFailed. While apprise sends, its own log records and urllib3's (which name the
    request path, token included, at DEBUG) are scrubbed the same way.
    """

    def __init__(self, service: ChannelKind, resolve_url: Callable[[], str], timeout_seconds: float,
                 where: str) -> None:
        self.kind = service
        self.resolve_url = resolve_url
        self.timeout_seconds = timeout_seconds
        self.where = where  # names the setting in errors: "the slack URL of owner 'Ana'"

    def deliver(self, alert: AlertRecord) -> None:
        import apprise
        from apprise import NotifyFormat, OverflowMode

        url = self.resolve_url()  # a missing secret is a ConfigError here, at the point of use
        with _scrubbed_logs(url) as reasons:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            if plugin is None or type(plugin).__name__ != APPRISE_PLUGINS[self.kind]:
                raise ConfigError(f"{self.where} is not a {self.kind} URL apprise understands "
                                  f"(see docs/reference.md, 'Owners and alerts')")
            plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout_seconds
            if self.kind == "discord":
                # Discord refuses a message over 2,000 characters: a long alert (worst cases, SQL) goes out
                # in several rather than cut short. Slack and Teams take the whole alert in one message
                # (apprise's own Teams limit, 1,000 characters, is far below the card's 28 KB).
                plugin.overflow_mode = OverflowMode.SPLIT
            if self.kind == "slack":
                plugin.use_blocks = True  # Block Kit (a header and the text), Slack's current message format
            sent = plugin.notify(body=alert.body, title=alert.subject, body_format=NotifyFormat.TEXT)
        if not sent:
            reason = "; ".join(dict.fromkeys(reasons)) or "apprise gave no reason"
            raise ChatDeliveryFailed(scrub(f"{self.kind} delivery failed: {reason}", [url]))


class ChatDeliveryFailed(RuntimeError):
    """A chat delivery failed; the message holds no part of the URL."""


class _ScrubSecret(logging.Filter):
    """Rewrites a record without any part of `secret`; keeps the WARNING+ messages (apprise's reasons)."""

    def __init__(self, secret: str, reasons: list[str]) -> None:
        super().__init__()
        self.secret = secret
        self.reasons = reasons

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = scrub(record.getMessage(), [self.secret])
        except Exception:
            return True
        record.msg, record.args = message, None
        if record.levelno >= logging.WARNING and record.name == "apprise":
            self.reasons.append(message)
        return True


_SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.util.retry")


@contextmanager
def _scrubbed_logs(secret: str):
    """While apprise sends: the reasons it logs (for the error), and no log record that holds `secret`."""
    reasons: list[str] = []
    scrubber = _ScrubSecret(secret, reasons)
    apprise_logger = logging.getLogger("apprise")
    level = apprise_logger.level
    if apprise_logger.getEffectiveLevel() > logging.WARNING:
        apprise_logger.setLevel(logging.WARNING)  # its reasons must reach the filter
    for name in _SCRUBBED_LOGGERS:
        logging.getLogger(name).addFilter(scrubber)
    try:
        yield reasons
    finally:
        for name in _SCRUBBED_LOGGERS:
            logging.getLogger(name).removeFilter(scrubber)
        apprise_logger.setLevel(level)


def describe_webhook_failure(exc: BaseException, url: str, timeout_seconds: float) -> str:
    """What went wrong, in words that never hold the URL's credentials (HTTP clients quote the whole URL)."""
    import httpx

    where = redact_url(url)
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return f"HTTPStatusError: {where} answered {response.status_code} {response.reason_phrase}".rstrip()
    if isinstance(exc, httpx.TimeoutException):
        return f"{type(exc).__name__}: {where} did not answer within {timeout_seconds:g} s"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return scrub(f"{type(exc).__name__}: {where}: {first_line}", [url])


def webhook_json(alert: AlertRecord) -> dict[str, str]:
    """The JSON body a webhook receives. {{subject}} and {{body}} are filled in by the block."""
    return {
        "source": "selfmodel",
        "alert_id": alert.alert_id,
        "incident_id": alert.incident_id,
        "suite": alert.suite,
        "kind": alert.kind,
        "owner": alert.owner,
        "subject": "{{subject}}",
        "text": "{{body}}",
    }


class _Undeliverable(Exception):
    """The alert has no destination any more (its owner or channel left the config)."""


def channel_for(alerts: AlertSettings, suite: str, owner_name: str, kind: str) -> AlertChannel:
    """The channel that reaches `owner_name` of `suite` by `kind`, as the config says today."""
    owner = next((o for o in alerts.owners_of(suite) if o.name == owner_name), None)
    if owner is None:
        raise _Undeliverable(f"owner {owner_name!r} is no longer declared for suite {suite!r} in alerts.owners")
    if kind == "email":
        if not owner.email:
            raise _Undeliverable(f"owner {owner_name!r} of suite {suite!r} no longer has an email")
        if alerts.smtp is None:
            raise _Undeliverable("alerts.smtp is not configured")
        return EmailChannel(alerts.smtp, owner.email)
    if kind == "webhook":
        if not owner.has_webhook:
            raise _Undeliverable(f"owner {owner_name!r} of suite {suite!r} no longer has a webhook")
        return WebhookChannel(owner.webhook_url, alerts.webhook_timeout_seconds)
    if kind in CHAT_SERVICES:
        chat = owner.chat_of(kind)
        if chat is None:
            raise _Undeliverable(f"owner {owner_name!r} of suite {suite!r} no longer has a {kind} chat")
        return ChatChannel(kind, lambda: chat.url(owner.name), alerts.webhook_timeout_seconds,
                           f"the {kind} URL of owner {owner.name!r}")
    raise _Undeliverable(f"unknown channel {kind!r}")


def _channel_kinds(owner: OwnerSettings) -> list[ChannelKind]:
    kinds: list[ChannelKind] = [kind for kind, reachable in (("email", owner.email is not None),
                                                             ("webhook", owner.has_webhook)) if reachable]
    return kinds + [chat.service for chat in owner.chat]


# --- rendering ----------------------------------------------------------------------------------------


def render(suite: str, kind: AlertKind, outcome: SuiteOutcome, incident: Incident) -> tuple[str, str]:
    """Subject and plain-text body of an alert of `kind` about `outcome`."""
    if kind == "recovery":
        return _render_recovery(suite, outcome, incident)
    return _render_problem(suite, kind, outcome, incident)


def _render_problem(suite: str, kind: AlertKind, outcome: SuiteOutcome, incident: Incident) -> tuple[str, str]:
    if outcome.failed_bar:
        first = outcome.bar_failures[0]
        headline = f"failed its bar: {first.metric} {_number(first.after)} (needs {first.threshold or 'the bar'})"
        more = len(outcome.bar_failures) - 1
    else:
        first = outcome.regressions[0]
        headline = f"regressed: {first.metric} {_number(first.before)} -> {_number(first.after)}"
        more = len(outcome.regressions) - 1
    subject = f"[selfmodel] {suite} {headline}" + (f" and {more} more" if more > 0 else "")

    what = " and ".join(
        part for part, present in (("failed its success bar", outcome.failed_bar), ("regressed", outcome.regressed))
        if present
    )
    lines = [
        f"Suite {suite} {what} in run {outcome.run_id}{_as_of(outcome.data_as_of)}.",
        f"Incident {incident.incident_id}, opened {_when(incident.opened_at)}. This is the only alert for it;",
        "the next one you get about this suite is the recovery notice, when a run passes again.",
    ]
    if outcome.bar_failures:
        lines += ["", "Below the bar (before = last passing run -> after = this run):"]
        lines += [f"  {_change_line(change)}; bar {change.threshold}" for change in outcome.bar_failures]
    if outcome.regressions:
        lines += ["", "Regressions against the last passing run (before -> after):"]
        lines += [f"  {_change_line(change)}" for change in outcome.regressions]
    lines += ["", "Worst cases:"]
    if outcome.worst_cases:
        shown = outcome.worst_cases[:MAX_WORST_CASES]
        lines += [f"  {case.case_id}: {case.detail}" for case in shown]
        if len(outcome.worst_cases) > len(shown):
            lines.append(f"  ... and {len(outcome.worst_cases) - len(shown)} more (the SQL below lists them all)")
    else:
        lines.append("  (none reported)")
    lines += ["", "Reproduce (SQL against the warehouse):", ""]
    lines += [f"    {line}" for line in outcome.reproduce_sql.strip().splitlines()]
    lines += ["", f"-- selfmodel alerts · suite {suite} · incident {incident.incident_id} · {kind}"]
    return subject, "\n".join(lines) + "\n"


def _render_recovery(suite: str, outcome: SuiteOutcome, incident: Incident) -> tuple[str, str]:
    subject = f"[selfmodel] {suite} recovered: passes its bar again"
    lines = [
        f"Suite {suite} passes its success bar again, with no regression, in run {outcome.run_id}"
        f"{_as_of(outcome.data_as_of)}.",
        f"This closes incident {incident.incident_id}, opened {_when(incident.opened_at)}"
        + (f":\n  {incident.opened_with}" if incident.opened_with else "."),
    ]
    if outcome.metrics:
        lines += ["", "Metrics of this run:"]
        lines += [f"  {name}: {_number(value)}" for name, value in sorted(outcome.metrics.items())]
    lines += ["", f"-- selfmodel alerts · suite {suite} · incident {incident.incident_id} · recovery"]
    return subject, "\n".join(lines) + "\n"


def _change_line(change: MetricChange) -> str:
    text = f"{change.metric}: {_number(change.before)} -> {_number(change.after)}"
    if change.before is not None and change.after is not None:
        text += f" (change {change.after - change.before:+.3f})"
    if change.interval is not None:
        low, high = change.interval
        text += f"; interval of the change [{_number(low, signed=True)}, {_number(high, signed=True)}]"
    else:
        text += "; interval: not computed"
    if change.p_value is not None:
        text += f"; p = {change.p_value:.3g}"
    return text


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


def _as_of(moment: datetime | None) -> str:
    return f" (data as of {_when(moment)})" if moment else ""


# --- incidents and delivery ---------------------------------------------------------------------------


def notify(
    con: Connection,
    settings: Settings,
    suite: str,
    outcome: SuiteOutcome,
    clock: Clock | None = None,
) -> list[AlertRecord]:
    """Alert `suite`'s owners about its latest run, once per incident; return every alert touched.

    First retries the suite's undelivered alerts. Then: a failing or regressed run with no open incident
    opens one and alerts each owner on each channel; one with an open incident sends nothing more; a
    healthy run with an open incident sends the recovery notice, which closes it. Delivery failures are
    recorded on the alert (and logged) and left for the next run; a missing secret raises ConfigError
    after every alert has been tried.
    """
    clock = clock or SystemClock()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", suite):
        raise ValueError(f"suite name {suite!r} must use only letters, digits, '_', '-' and '.'")
    config_errors: list[ConfigError] = []
    touched = _deliver_all(con, settings, _undelivered(con, suite), clock, config_errors)

    incident = _open_incident(con, suite)
    owners = settings.alerts.owners_of(suite)
    kind: AlertKind | None = None
    if not outcome.healthy and incident is None:
        kind = "failure" if outcome.failed_bar else "regression"
        now = clock.now()
        opened = f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"
        incident = Incident(f"{suite}-{opened}-{uuid.uuid4().hex[:8]}", now, None)
    elif outcome.healthy and incident is not None:
        kind = "recovery"
    if kind is not None:
        subject, body = render(suite, kind, outcome, incident)
        if not owners:
            log.warning("suite %s: %s of run %s reaches no one: no owners in alerts.owners",
                        suite, kind, outcome.run_id)
            if kind == "recovery":
                # The incident still ends: left open, it would swallow the next one (no alert for it).
                touched.append(_record_closed_unsent(con, incident.incident_id, suite, subject, body, clock.now()))
        new = [
            _record_new(con, incident.incident_id, suite, kind, owner.name, channel, clock.now(), subject, body)
            for owner in owners
            for channel in _channel_kinds(owner)
        ]
        touched += _deliver_all(con, settings, new, clock, config_errors)
    if config_errors:
        raise config_errors[0]
    return touched


def retry_undelivered(
    con: Connection, settings: Settings, clock: Clock | None = None, suite: str | None = None
) -> list[AlertRecord]:
    """Try again every alert not delivered yet (of one suite, or all), oldest first; return them."""
    config_errors: list[ConfigError] = []
    touched = _deliver_all(con, settings, _undelivered(con, suite), clock or SystemClock(), config_errors)
    if config_errors:
        raise config_errors[0]
    return touched


def _open_incident(con: Connection, suite: str) -> Incident | None:
    rows = run_dicts(con, "open_incident", {"suite": suite})
    return Incident(**rows[0]) if rows else None


def _undelivered(con: Connection, suite: str | None) -> list[AlertRecord]:
    return [AlertRecord(**row) for row in run_dicts(con, "undelivered_alerts", {"suite": suite})]


def _record_new(con: Connection, incident_id: str, suite: str, kind: AlertKind, owner: str,
                channel: ChannelKind, now: datetime, subject: str, body: str) -> AlertRecord:
    record = AlertRecord(
        alert_id=uuid.uuid4().hex, incident_id=incident_id, suite=suite, kind=kind, owner=owner,
        channel=channel, created_at=now, delivered_at=None, attempts=0, last_error=None,
        subject=subject, body=body,
    )
    run(con, "insert_alert", {
        "alert_id": record.alert_id, "incident_id": incident_id, "suite": suite, "kind": kind,
        "owner": owner, "channel": channel, "created_at": now, "subject": subject, "body": body,
    })
    return record


def _record_closed_unsent(con: Connection, incident_id: str, suite: str, subject: str, body: str,
                          now: datetime) -> AlertRecord:
    """A recovery that reached no one, recorded as settled so the incident is closed and nothing retries it."""
    record = _record_new(con, incident_id, suite, "recovery", NO_OWNERS, NO_CHANNEL, now, subject, body)
    error = "no owners in alerts.owners: nobody was told"
    run(con, "record_alert_attempts", {"alert_id": record.alert_id, "attempts": 0, "last_error": error,
                                       "delivered_at": now})
    return replace(record, last_error=error, delivered_at=now)


def _deliver_all(con: Connection, settings: Settings, records: list[AlertRecord], clock: Clock,
                 config_errors: list[ConfigError]) -> list[AlertRecord]:
    return [_deliver(con, settings.alerts, record, clock, config_errors) for record in records]


def _deliver(con: Connection, alerts: AlertSettings, record: AlertRecord, clock: Clock,
             config_errors: list[ConfigError]) -> AlertRecord:
    """Try one alert up to 1 + retries times, recording each attempt on its row."""
    try:
        channel = channel_for(alerts, record.suite, record.owner, record.channel)
    except _Undeliverable as exc:
        record = _record_attempt(con, record, error=str(exc), delivered_at=None)
        log.error("alert %s (%s, %s to %s) cannot be delivered: %s", record.alert_id, record.suite,
                  record.channel, record.owner, record.last_error)
        return record
    for attempt in range(1 + alerts.retries):
        if attempt:
            time.sleep(alerts.retry_delay_seconds)
        try:
            channel.deliver(record)
        except ConfigError as exc:
            config_errors.append(exc)
            return _record_attempt(con, record, error=f"configuration: {scrub(str(exc))}", delivered_at=None)
        except Exception as exc:  # any failure of the receiver or the transport; recorded, never dropped
            record = _record_attempt(con, record, error=_describe_error(exc), delivered_at=None)
            log.warning("alert %s (%s, %s to %s) attempt %d failed: %s", record.alert_id, record.suite,
                        record.channel, record.owner, record.attempts, record.last_error)
            continue
        log.info("alert %s (%s, %s) delivered to %s by %s", record.alert_id, record.suite, record.kind,
                 record.owner, record.channel)
        return _record_attempt(con, record, error=None, delivered_at=clock.now())
    log.error("alert %s (%s, %s to %s) is undelivered after %d attempts; the next run tries again: %s",
              record.alert_id, record.suite, record.channel, record.owner, record.attempts, record.last_error)
    return record


def _record_attempt(con: Connection, record: AlertRecord, *, error: str | None,
                    delivered_at: datetime | None) -> AlertRecord:
    run(con, "record_alert_attempts", {
        "alert_id": record.alert_id, "attempts": 1, "last_error": error, "delivered_at": delivered_at,
    })
    # A success keeps the error of the attempt before it: the row shows the alert needed retries.
    return replace(record, attempts=record.attempts + 1, last_error=error or record.last_error,
                   delivered_at=delivered_at)


def _describe_error(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, (WebhookFailed, ChatDeliveryFailed)):  # already says which kind of failure it was
        return scrub(first_line)[:MAX_ERROR_CHARS]
    # Any URL in an error is shown as scheme and host: whatever raised may have quoted a credential.
    return scrub(f"{type(exc).__name__}: {first_line}")[:MAX_ERROR_CHARS]
