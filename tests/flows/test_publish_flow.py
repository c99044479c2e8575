"""The publish flow: a passing audit publishes and records an artifact; a failing one fails the run and
keeps the current snapshot."""

from __future__ import annotations

import asyncio

import pytest

# Imported here, not in a test: the first import of Prefect's flow API configures logging, which would drop
# the log capture (caplog) of the test that happened to import it.
from flows.publish import AuditFailed, publish
from tests.belief_warehouse import (  # noqa: F401
    belief_warehouse, belief_warehouse_template, nightly_owner_and_failing_eval, record_quality)
from warehouse.db import connect
from warehouse.online import read_current


@pytest.mark.slow
def test_publish_flow_publishes_then_fails_on_a_failed_audit(prefect_server, belief_warehouse, caplog) -> None:
    import logging

    from prefect.client.orchestration import get_client

    settings = belief_warehouse()
    config = str(settings.base_dir / "selfmodel.yaml")
    con = connect(settings.warehouse_path)
    record_quality(con)
    con.close()
    result = publish(config_path=config)
    assert result["published"] and read_current(settings.snapshots_path) == result["version"]

    async def artifacts():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    audit = {artifact.key: artifact for artifact in asyncio.run(artifacts())}["snapshot-audit"]
    assert "checksums" in str(audit.data) and result["version"] in audit.description

    con = connect(settings.warehouse_path)
    record_quality(con, eval_passed=False)
    con.close()
    caplog.set_level(logging.INFO)
    state = publish(config_path=config, return_state=True)
    assert state.is_failed()
    with pytest.raises(AuditFailed, match="stays current"):
        state.result()
    assert read_current(settings.snapshots_path) == result["version"]
    # A refusal is an outcome the audit recorded: its run log says why in a line, with no traceback.
    refused = [record for record in caplog.records if "stays current" in record.getMessage()]
    assert refused and not any(record.exc_info for record in refused) and "Traceback" not in caplog.text


@pytest.mark.slow
def test_a_publish_flow_run_on_its_own_tells_the_nightly_owners_once_when_refused(prefect_server, belief_warehouse,
                                                                                   webhook) -> None:

    _, config = nightly_owner_and_failing_eval(belief_warehouse, webhook.url)
    assert publish(config_path=config, tell_owners=False, return_state=True).is_failed()
    assert webhook.accepted() == []  # the nightly run tells its owners itself
    assert publish(config_path=config, return_state=True).is_failed()
    assert publish(config_path=config, return_state=True).is_failed()  # the same incident: no second alert
    [alert] = webhook.accepted()
    assert "snapshot_published" in str(alert) and "publish flow run" in str(alert)
