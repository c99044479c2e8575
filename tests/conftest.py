"""Shared fixtures: every test gets its own config folder and a clean environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from selfmodel.settings import Settings, load_settings
from tests.loopback import SmtpServer, WebhookReceiver, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
QC_SAMPLE = REPO_ROOT / "data" / "stackexchange-quantumcomputing"
SHARED_REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def _sandboxed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's config or overrides, or writes outside its tmp folder."""
    import os

    for name in list(os.environ):
        if name.startswith("SELFMODEL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SELFMODEL_VERIFIED_DIR", str(tmp_path / ".verified"))  # the snapshot reader's marks
    monkeypatch.chdir(tmp_path)


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _every_quarantine_reason_is_registered():
    """Every test that ingests checks the quarantine registry too: a reason the code gives and
    selfmodel.quarantine.QUARANTINE_REASONS lacks (so the reference does not explain it) fails the test."""
    handler = _Collected()
    logger = logging.getLogger("selfmodel.ingest")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    unknown = [message for message in handler.messages if "QUARANTINE_REASONS" in message]
    assert not unknown, unknown


@pytest.fixture
def make_settings(tmp_path: Path):
    """make_settings(sources=[...], **sections) writes selfmodel.yaml in tmp_path and loads it."""

    def factory(sources: list[dict], **sections) -> Settings:
        config = {"warehouse": {"path": "warehouse.duckdb"}, "sources": sources, **sections}
        path = tmp_path / "selfmodel.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return load_settings(path, environ={})

    return factory


@pytest.fixture
def qc_sample() -> Path:
    return QC_SAMPLE


@pytest.fixture
def shared_real_data() -> Path:
    if not SHARED_REAL_DATA.is_dir():
        pytest.skip("../shared/data/real is not present (optional real-data tests)")
    return SHARED_REAL_DATA


@pytest.fixture
def smtp_server():
    server = SmtpServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def openai_server():
    """A real local OpenAI-compatible HTTP server (tests/openai_server.py): script it, point `llm.base_url` at
    `openai_server.base_url`, then read what reached it."""
    from tests.openai_server import OpenAIServer

    server = OpenAIServer().start()
    yield server
    server.stop()


def _must_not_skip() -> bool:
    """In CI a real server that cannot start fails the tests that need it; elsewhere they skip."""
    import os

    return bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/postgres_server.py); each test makes its database."""
    from tests.postgres_server import PostgresServer

    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError) as exc:
        if _must_not_skip():
            raise
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _s3_server_session():
    from tests.s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_server(_s3_server_session, monkeypatch: pytest.MonkeyPatch):
    """A local S3 server (moto, server mode) with no buckets; the AWS_* environment points s3fs at it."""
    import s3fs

    _s3_server_session.reset()
    for name, value in _s3_server_session.environment().items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep another test's listing
    yield _s3_server_session
    s3fs.S3FileSystem.clear_instance_cache()
