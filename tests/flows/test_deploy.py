"""prefect.yaml, deployed for real: `prefect work-pool create` and `prefect deploy --all --no-prompt` against a
temporary Prefect server (the session's test harness), then every deployment read back through the client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PREFECT_YAML = REPO_ROOT / "prefect.yaml"


def _prefect(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "COLUMNS": "200"}
    return subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _deployments() -> dict:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_deployments()

    return {deployment.name: deployment for deployment in asyncio.run(read())}


@pytest.mark.slow
def test_prefect_yaml_deploys_every_flow_and_the_nightly_schedule(prefect_server, tmp_path: Path) -> None:
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    pool = declared["definitions"]["work_pools"]["selfmodel"]["name"]
    schedule = declared["definitions"]["schedules"]["nightly"]
    assert schedule["timezone"], "the nightly schedule names its time zone"
    original = PREFECT_YAML.read_bytes()

    created = _prefect("work-pool", "create", pool, "--type", "process", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = _prefect("deploy", "--all", "--no-prompt")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert PREFECT_YAML.read_bytes() == original, "prefect deploy must not rewrite prefect.yaml"

    deployments = _deployments()
    assert set(deployments) == {d["name"] for d in declared["deployments"]}
    assert {"nightly", "ingest", "refresh_beliefs", "evaluate", "publish"} <= set(deployments)
    for entry in declared["deployments"]:
        deployment = deployments[entry["name"]]
        assert deployment.work_pool_name == pool
        assert deployment.entrypoint == entry["entrypoint"]
        assert deployment.description, f"{entry['name']} needs a description"
    nightly = deployments["nightly"]
    [scheduled] = nightly.schedules
    assert scheduled.active
    assert (scheduled.schedule.cron, scheduled.schedule.timezone) == (schedule["cron"], schedule["timezone"])
    assert nightly.parameters == {"config_path": "selfmodel.yaml", "as_of": None, "suites": None}
    assert "as_of" in nightly.parameter_openapi_schema["properties"]
    for name in ("refresh_beliefs", "evaluate"):  # the steps a past night can be rerun with
        assert deployments[name].parameters["as_of"] is None
        assert "as_of" in deployments[name].parameter_openapi_schema["properties"]
    assert all(not deployments[name].schedules for name in deployments if name != "nightly")  # on demand
    for name, deployment in deployments.items():  # every deployment writes the warehouse: one run at a time
        assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1, name
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE", name


@pytest.mark.slow
def test_a_bad_schedule_fails_the_deploy(prefect_server, tmp_path: Path) -> None:
    """The check above would catch a broken file: a cron Prefect cannot read makes `prefect deploy` exit non-zero."""
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    [nightly] = [d for d in declared["deployments"] if d["name"] == "nightly"]
    nightly["schedules"] = [{"cron": "0 25 * * *", "timezone": "UTC"}]
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump({**declared, "deployments": [nightly]}))
    _prefect("work-pool", "create", nightly["work_pool"]["name"], "--type", "process", "--overwrite")
    deployed = _prefect("deploy", "--all", "--no-prompt", "--prefect-file", str(broken))
    assert deployed.returncode != 0
    assert "cron" in (deployed.stdout + deployed.stderr).lower(), deployed.stdout + deployed.stderr
