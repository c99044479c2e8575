"""File sources in object storage, through the real s3fs client against a local S3 server (moto, server mode):
exact accounting, objects known by ETag (unchanged: not even read; rewritten: read again; grown: read on),
and the storage secret nowhere."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

import pytest

from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.settings import ConfigError
from tests.selfmodel.test_ingest import assert_every_batch_balances, counts, query

CLOCK = FixedClock(datetime(2025, 1, 1, tzinfo=timezone.utc))


def line(event_id: str, user: str = "u1", text: str = "hello") -> bytes:
    return json.dumps({"event_id": event_id, "user_id": user, "occurred_at": "2024-06-01T12:00:00Z",
                       "kind": "message", "text": text}).encode() + b"\n"


@pytest.fixture
def bucket(s3_server):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("logs")
    return fs


def s3_source(path: str = "s3://logs/app/*.jsonl") -> dict:
    return {"name": "app", "format": "jsonl", "path": path}


def actions(report) -> dict[str, str]:
    return {entry["path"]: entry["action"] for entry in report.files}


def object_reads(caplog) -> list[str]:
    """The objects the S3 server was asked for (its access log), listings left out."""
    requests = (re.search(r"GET (/logs/\S*)", record.getMessage()) for record in caplog.records
                if record.name == "werkzeug")
    return [found.group(1) for found in requests if found and "list-type" not in found.group(1)]


def test_an_s3_prefix_ingests_with_exact_accounting_and_objects_are_known_by_etag(bucket, make_settings,
                                                                                 caplog) -> None:
    bucket.pipe("logs/app/a.jsonl", line("a1") + line("a2") + b"{not json\n")
    bucket.pipe("logs/app/b.jsonl", line("b1", user="u2"))
    bucket.pipe("logs/app/notes.txt", b"not a log\n")
    settings = make_settings([s3_source()])
    caplog.set_level(logging.INFO, logger="werkzeug")
    [first] = ingest(settings, clock=CLOCK)
    assert first.status == "committed", first.error
    assert counts(first) == (4, 3, 0, 1)
    assert actions(first) == {"s3://logs/app/a.jsonl": "new", "s3://logs/app/b.jsonl": "new"}
    assert query(settings, "select file, line_no, reason from quarantine") == [
        ("s3://logs/app/a.jsonl", 3, "malformed_json")]
    assert all(etag for (etag,) in query(settings, "select etag from ingest_files"))

    assert sorted(object_reads(caplog)) == ["/logs/app/a.jsonl", "/logs/app/b.jsonl"]  # the log is seen
    caplog.clear()
    [second] = ingest(settings, clock=CLOCK)
    assert counts(second) == (0, 0, 0, 0)
    assert set(actions(second).values()) == {"unchanged"}
    assert object_reads(caplog) == []  # the same ETag: not even downloaded

    # Grown: a.jsonl gets one more line (an object is rewritten whole, so its ETag changes): only it is read.
    bucket.pipe("logs/app/a.jsonl", line("a1") + line("a2") + b"{not json\n" + line("a3"))
    # Rewritten with the same size: read again whole; what it still holds is a duplicate.
    bucket.pipe("logs/app/b.jsonl", line("b9", user="u2"))
    [third] = ingest(settings, clock=CLOCK)
    assert actions(third) == {"s3://logs/app/a.jsonl": "appended", "s3://logs/app/b.jsonl": "rewritten"}
    assert counts(third) == (2, 2, 0, 0)
    assert query(settings, "select event_id from events order by 1") == [("a1",), ("a2",), ("a3",), ("b1",), ("b9",)]
    assert_every_batch_balances(settings)


def test_a_single_object_and_a_prefix_folder(bucket, make_settings) -> None:
    bucket.pipe("logs/app/a.jsonl", line("a1"))
    bucket.pipe("logs/app/deeper/b.jsonl", line("b1"))
    [one] = ingest(make_settings([s3_source("s3://logs/app/a.jsonl")]), clock=CLOCK)
    assert counts(one) == (1, 1, 0, 0)
    [folder] = ingest(make_settings([{**s3_source("s3://logs/app/"), "name": "folder"}]), clock=CLOCK)
    assert actions(folder) == {"s3://logs/app/a.jsonl": "new", "s3://logs/app/deeper/b.jsonl": "new"}


def test_a_missing_bucket_fails_the_batch_in_one_line(s3_server, make_settings) -> None:
    [report] = ingest(make_settings([s3_source("s3://no-such-bucket/x/*.jsonl")]), clock=CLOCK)
    assert report.status == "failed" and report.error.startswith("SourceUnavailable")


def test_a_path_url_carrying_a_credential_is_refused_without_quoting_it(make_settings) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings([s3_source("https://logs.example.com/app.jsonl?sig=TOPSECRETSIG123")])
    assert "credential" in str(caught.value) and "TOPSECRETSIG123" not in str(caught.value)
