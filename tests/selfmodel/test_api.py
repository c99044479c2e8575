"""The HTTP API (selfmodel.api): the lookup --json shape, enrichment, errors as JSON with the right status,
health before and after a publish, following CURRENT, and one real `selfmodel api` server over TCP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from selfmodel.api import create_app
from selfmodel.cli import main
from tests.loopback import free_port
from tests.warehouse.test_online import AS_OF, ROWS, publish_rows
from warehouse.online import BeliefStore

QUERY = "How do I build a Toffoli gate?"


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    folder = tmp_path / "snapshots"
    publish_rows(folder)
    return folder


@pytest.fixture
def client(snapshots: Path):
    with TestClient(create_app(snapshots, poll_interval=0.02)) as opened:
        yield opened


def config_for(snapshots: Path) -> Path:
    path = snapshots.parent / "selfmodel.yaml"
    path.write_text(yaml.safe_dump({"snapshots": {"path": str(snapshots)}}), encoding="utf-8")
    return path


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_beliefs_are_the_lookup_json_of_the_cli(client: TestClient, snapshots: Path) -> None:
    response = client.get("/users/ana/beliefs")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    cli = CliRunner().invoke(main, ["--config", str(config_for(snapshots)), "lookup", "ana", "--json"])
    assert cli.exit_code == 0, cli.output
    assert response.json() == json.loads(cli.stdout)
    assert [b["key"] for b in response.json()["beliefs"]][:2] == ["language", "role"]  # most confident first
    assert response.json()["cold_start"] is False


def test_an_unknown_user_or_path_is_a_404_with_a_json_error(client: TestClient) -> None:
    unknown = client.get("/users/nobody/beliefs")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "the snapshot holds nothing about this user"
    assert unknown.json()["user_id"] == "nobody"
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    # an id with a slash or other characters travels percent-encoded and is looked up as sent
    assert client.get("/users/a%2Fb%20c/beliefs").json()["user_id"] == "a/b c"


def test_enrich_answers_what_the_store_enriches(client: TestClient, snapshots: Path) -> None:
    with BeliefStore.open(snapshots, watch=False) as store:
        expected = store.enrich(QUERY, "ana", min_confidence=0.8)
        default = store.enrich(QUERY, "ana")
    response = client.post("/enrich", json={"user_id": "ana", "query": QUERY, "min_confidence": 0.8})
    assert response.status_code == 200
    body = response.json()
    assert body["enriched_query"] == expected.enriched_query and body["enriched_query"].endswith(QUERY)
    assert [(b["key"], b["value"]) for b in body["beliefs_used"]] == [(b.key, b.value) for b in expected.beliefs_used]
    assert all(b["confidence"] >= 0.8 for b in body["beliefs_used"])
    assert body["snapshot"] == expected.snapshot_version and body["min_confidence"] == 0.8

    served = client.post("/enrich", json={"user_id": "ana", "query": QUERY}).json()  # the serving threshold
    assert served["enriched_query"] == default.enriched_query and served["min_confidence"] == 0.6
    assert len(client.post("/enrich", json={"user_id": "ana", "query": QUERY, "max_beliefs": 2}).json()
               ["beliefs_used"]) == 2
    cold = client.post("/enrich", json={"user_id": "nobody", "query": QUERY})
    assert cold.status_code == 200 and cold.json()["enriched_query"] == QUERY and cold.json()["beliefs_used"] == []


@pytest.mark.parametrize(("body", "problem"), [
    ({"user_id": "ana", "query": QUERY, "min_confidence": 1.5}, "min_confidence: Input should be less than or equal to 1"),
    ({"user_id": "ana", "query": QUERY, "min_confidence": -0.1}, "min_confidence: Input should be greater than or equal to 0"),
    ('{"user_id": "ana", "query": "q", "min_confidence": NaN}', "min_confidence: Input should be a finite number"),
    ({"user_id": "ana"}, "query: Field required"),
    ({"user_id": "", "query": QUERY}, "user_id: String should have at least 1 character"),
    ({"user_id": 5, "query": QUERY}, "user_id: Input should be a valid string"),
    ({"user_id": "ana", "query": QUERY, "min_confidance": 0.9}, "min_confidance: Extra inputs are not permitted"),
    ({"user_id": "ana", "query": QUERY, "max_beliefs": 0}, "max_beliefs: Input should be greater than or equal to 1"),
    ("{not json", "JSON decode error"),
    (["ana", QUERY], "Input should be a valid dictionary"),
], ids=["above-1", "below-0", "nan", "no-query", "empty-user", "number-user", "misspelt", "no-beliefs", "not-json",
        "a-list"])
def test_a_bad_body_is_a_422_naming_the_problem(client: TestClient, body, problem: str) -> None:
    if isinstance(body, str):
        response = client.post("/enrich", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/enrich", json=body)
    assert response.status_code == 422
    assert problem in response.json()["error"]


def test_a_body_not_sent_as_json_is_told_how_to_send_it(client: TestClient) -> None:
    response = client.post("/enrich", data={"user_id": "ana", "query": QUERY})
    assert response.status_code == 422 and "Content-Type: application/json" in response.json()["error"]


def test_min_confidence_below_what_the_snapshot_holds_is_a_422(tmp_path: Path) -> None:
    publish_rows(tmp_path, rows=[r for r in ROWS if r[3] >= 0.5], min_confidence=0.5)
    with TestClient(create_app(tmp_path)) as client:
        response = client.post("/enrich", json={"user_id": "ana", "query": QUERY, "min_confidence": 0.3})
    assert response.status_code == 422 and "only beliefs at or above 0.5" in response.json()["error"]


def test_health_is_503_until_a_snapshot_is_published_then_serves_it(tmp_path: Path) -> None:
    folder = tmp_path / "snapshots"
    with TestClient(create_app(folder, poll_interval=0.02)) as client:
        waiting = client.get("/healthz")
        assert waiting.status_code == 503
        assert waiting.json()["status"] == "no snapshot" and "no snapshot published" in waiting.json()["error"]
        assert client.get("/users/ana/beliefs").status_code == 503
        assert client.post("/enrich", json={"user_id": "ana", "query": QUERY}).status_code == 503

        version = publish_rows(folder)
        wait_for(lambda: client.get("/healthz").status_code == 200)
        health = client.get("/healthz").json()
        assert (health["status"], health["snapshot"], health["users"]) == ("ok", version, 2)
        assert health["data_as_of"] == AS_OF.isoformat() and health["last_reload_error"] is None
        assert client.get("/users/ana/beliefs").json()["snapshot_version"] == version


def test_it_follows_current(client: TestClient, snapshots: Path) -> None:
    assert client.get("/users/cy/beliefs").status_code == 404
    second = publish_rows(snapshots, rows=ROWS + [("cy", "language", "fr", 0.9, 9)], day=1)
    wait_for(lambda: client.get("/healthz").json()["snapshot"] == second)
    assert client.get("/users/cy/beliefs").json()["beliefs"][0]["value"] == "fr"
    assert client.post("/enrich", json={"user_id": "cy", "query": QUERY}).json()["snapshot"] == second


def test_health_reports_a_new_snapshot_that_failed_to_load_while_the_old_one_serves(snapshots: Path) -> None:
    with BeliefStore.open(snapshots, watch=False) as store, TestClient(create_app(store)) as client:
        first = store.version
        bad = publish_rows(snapshots, day=1)
        (snapshots / bad / "beliefs.parquet").write_bytes(b"garbage")
        assert store.refresh() is False  # what the watcher does, without racing it
        health = client.get("/healthz").json()
        assert health["snapshot"] == first and "sha256" in health["last_reload_error"]
        assert client.get("/users/ana/beliefs").json()["snapshot_version"] == first


def test_selfmodel_api_serves_over_tcp(snapshots: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "selfmodel", "--config", str(config_for(snapshots)), "api",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            def up() -> bool:
                assert server.poll() is None, server.stderr.read()
                try:
                    return http.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=60)
            assert http.get("/users/ana/beliefs").json()["user_id"] == "ana"
            enriched = http.post("/enrich", json={"user_id": "ana", "query": QUERY, "min_confidence": 0.9})
            assert enriched.json()["enriched_query"].endswith(QUERY) and len(enriched.json()["beliefs_used"]) == 2
            assert http.post("/enrich", json={"user_id": "ana", "query": QUERY, "min_confidence": 2}).status_code == 422
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    assert f"selfmodel api on http://127.0.0.1:{port}: serving snapshot" in stderr and "Traceback" not in stderr


def test_a_port_in_use_is_one_line_and_exit_1(snapshots: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(config_for(snapshots)), "api",
                                 "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "leaked" not in result.stderr
    assert result.stderr.startswith("error: Address already in use")


def test_connections_to_the_api_socket_send_without_delay() -> None:
    """Each response is two writes (head, body): without TCP_NODELAY on the accepted connection, the second
    waits for the client's delayed ACK, ~40 ms a request. asyncio sets it only when the listening socket
    says it is TCP."""
    import asyncio
    import socket

    from selfmodel.api import _listen

    listening = _listen("127.0.0.1", 0)

    async def nodelay_of_accepted() -> int:
        loop = asyncio.get_running_loop()
        accepted = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                                 socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(nodelay_of_accepted()) != 0
