"""The `refresh_beliefs` flow: new events -> observations -> beliefs, with a summary artifact.

With `shards` > 1 the extraction (the expensive, pure-Python part) is split by a hash of user_id into
Parquet shards that run as parallel tasks on a Dask cluster: a LocalCluster by default, or the cluster at
`dask_address`. The warehouse is written by one task only, which loads the shards' observations and folds
them; the result is identical to the single-process refresh.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from selfmodel.beliefs.observe import SHARD_RUN_PREFIX, shard_work_root
from selfmodel.lock import run_writer_lock
from selfmodel.settings import find_config_path, load_settings
from tasks.beliefs import export_shards_task, extract_shard_task, fold_shards_task, refresh_beliefs_task

SUMMARY_COLUMNS = ("refresh_id", "mode", "as_of", "events_extracted", "observations_extracted",
                   "observations_folded", "groups_touched", "beliefs_total")


def dask_runner(shards: int, address: str | None):
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": min(shards, 8), "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="refresh_beliefs_sharded")
def refresh_sharded(config_path: str, as_of: datetime | None, full: bool, shards: int, work_folder: str) -> dict:
    """Extract observations shard by shard in parallel, then fold them into beliefs in one writer task."""
    plan = export_shards_task(config_path, work_folder, shards, full)
    observation_files = extract_shard_task.map(unmapped(config_path), plan["event_files"]).result()
    return fold_shards_task(config_path, plan, observation_files, as_of, full)


@flow(name="refresh_beliefs")
def refresh_beliefs(config_path: str | None = None, as_of: datetime | None = None, full: bool = False,
                    shards: int | None = None, dask_address: str | None = None) -> dict:
    """Refresh per-user beliefs from new evidence (incremental unless full), as of a time; shards > 1 scales out."""
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    shards = shards or settings.beliefs.shards  # unset: beliefs.shards and beliefs.dask_address in the config
    dask_address = dask_address or settings.beliefs.dask_address
    with run_writer_lock(settings, "refresh_beliefs flow run"):
        if shards > 1:
            # Shards live beside the warehouse; on a multi-machine cluster that folder must be shared storage.
            work_folder = shard_work_root(settings) / f"{SHARD_RUN_PREFIX}{uuid.uuid4().hex[:8]}"
            try:
                report = refresh_sharded.with_options(task_runner=dask_runner(shards, dask_address))(
                    config_path, as_of, full, shards, str(work_folder))
            finally:
                shutil.rmtree(work_folder, ignore_errors=True)
        else:
            report = refresh_beliefs_task(config_path, as_of, full)
    create_table_artifact(
        key="belief-refresh",
        table=[{name: report[name] for name in SUMMARY_COLUMNS} | {"shards": shards}],
        description="What the belief refresh extracted and folded",
    )
    return report
