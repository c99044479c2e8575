"""Credentials never leave as text: the redacted forms errors, logs, JSON output and tables show instead.

For Slack, Microsoft Teams and most chat tools a webhook URL *is* the credential (the token sits in its
path), and any URL may carry a password (`https://user:password@host/`) or a token in its query. So a URL
is shown as its scheme and host at most (`https://hooks.slack.com/…`), and text that may quote a secret
(an exception from an HTTP client, a log record) is scrubbed of the secret's value and of its parts before
it is stored, logged or printed. Nothing here imports Prefect or talks to the network.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable
from urllib.parse import quote, unquote, urlsplit

ELLIPSIS = "…"
# A URL in free text: a scheme, then everything up to a space or a quote/bracket that ends it.
_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*)://([^\s'\"<>]*)")
# Parts of a secret shorter than this are left alone: hiding "a" or "80" would only garble the text.
_MIN_PART = 4


def redact_url(url: str) -> str:
    """`scheme://host[:port]`, followed by `/…` when the URL had more (a path, a query, a fragment).

    User info (`user:password@`) never appears. Text that is not a URL at all becomes `…`.
    """
    match = _URL_IN_TEXT.fullmatch(url.strip())
    if match is None:
        return ELLIPSIS
    return _redacted(match)


def _redacted(match: re.Match) -> str:
    scheme, rest = match.group(1), match.group(2)
    # User info ends at the last "@" before a query or fragment, even when a password holds a raw "/"
    # (invalid, but then the part before the "/" must not be shown as if it were the host).
    before_query = re.split(r"[?#]", rest, maxsplit=1)[0]
    if "@" in before_query:
        rest = rest[before_query.rindex("@") + 1:]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return f"{scheme}://{host}" + ("/" + ELLIPSIS if len(rest) > len(host) else "")


def redact_urls(text: str) -> str:
    """`text` with every URL in it reduced to its redacted form (see redact_url)."""
    return _URL_IN_TEXT.sub(_redacted, text)


def secret_parts(secret: str) -> list[str]:
    """The strings that could give `secret` away: the whole value, and for a URL its user, password, path
    segments, query values and fragment, each as written and percent-decoded/encoded; longest first."""
    parts = {secret}
    try:
        split = urlsplit(secret)
    except ValueError:
        split = None
    if split is not None and split.scheme and split.netloc:
        parts.update(filter(None, (split.username, split.password, split.fragment, split.query)))
        parts.update(segment for segment in split.path.split("/"))
        parts.update(pair.partition("=")[2] for pair in split.query.split("&"))
        parts.add(split.netloc.rpartition("@")[0])
        host = split.netloc.rpartition("@")[2]
        parts.discard(host)
    variants = set()
    for part in parts:
        variants.update((part, unquote(part), quote(part, safe="")))
    return sorted((part for part in variants if len(part) >= _MIN_PART), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without any secret in it: a secret quoted whole becomes its redacted form, its parts `…`, then
    every URL is reduced to scheme and host. Use on any text that may quote a credential before it is kept
    or shown."""
    for secret in secrets:
        if not secret:
            continue
        for variant in {secret, quote(secret, safe="")}:
            text = text.replace(variant, redact_url(secret))
        for part in secret_parts(secret):
            text = text.replace(part, ELLIPSIS)
    return redact_urls(text)


class RedactUrlsFilter(logging.Filter):
    """A logging filter that formats a record and redacts the URLs in it (httpx logs every request's
    full URL at INFO: `HTTP Request: POST https://hooks.slack.com/services/T/B/token "HTTP/1.1 200 OK"`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler, as logging would
            return True
        record.msg, record.args = redact_urls(message), None
        return True


_FILTERED_LOGGERS = ("httpx", "httpx2")  # httpx2: the transport of openai 3


def redact_http_client_logs() -> None:
    """Install RedactUrlsFilter on the HTTP client loggers that name request URLs (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactUrlsFilter) for existing in logger.filters):
            logger.addFilter(RedactUrlsFilter())
