"""Shared fixtures: every test gets its own config folder and a clean environment."""

from __future__ import annotations

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
