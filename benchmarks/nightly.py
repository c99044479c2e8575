"""Time a warm nightly run, and the share of it that is Prefect's own overhead.

    python benchmarks/nightly.py [--config selfmodel.yaml] [--runs 3] [--server-url http://127.0.0.1:4200/api]

Run it after `make demo`: every run here is a *warm* night, the same data once more (nothing new to load
or extract; expectations, evals, report and publish run in full). Alternating, each in a fresh process,
wall clock including Python start-up and imports:

  * direct:  the domain functions the nightly flow's tasks call, in the same order, in one plain Python
             process that never imports Prefect (`python benchmarks/nightly.py --direct`);
  * nightly: `selfmodel nightly --json`, the Prefect flow run with its four subflows, on the temporary
             Prefect server the command starts (what `make demo` does);
  * nightly on a server: the same with PREFECT_API_URL set (`--server-url`, a running `prefect server
             start`), which leaves out the temporary server's start-up.

Prints every run, the medians, and Prefect's overhead = nightly - direct, in seconds and as a share of
the nightly wall time (goals: nightly <= 30 s, overhead <= 10 %). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_direct(config_path: str) -> dict:
    """The nightly's work without Prefect: the same calls as tasks/*.py make, in the flow's order."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    from selfmodel.alerts import SuiteOutcome
    from selfmodel.analyst import export_analyst_copy
    from selfmodel.beliefs.refresh import refresh_beliefs
    from selfmodel.clock import SystemClock
    from selfmodel.evals.notify import owner_alert_hook
    from selfmodel.evals.report import write_report
    from selfmodel.evals.run import run_evals
    from selfmodel.ingest import ingest_source
    from selfmodel.lock import writer_lock
    from selfmodel.nightly import belief_summary, latest_snapshot_audit, tell_owners
    from selfmodel.publish import publish
    from selfmodel.quality import validate
    from selfmodel.settings import load_settings
    from warehouse.db import connect

    timings["imports"] = time.perf_counter() - started
    settings = load_settings(config_path)

    def step(name, work, read_only=False):
        begun = time.perf_counter()
        con = connect(settings.warehouse_path, read_only=read_only,
                      memory_limit=None if read_only else settings.warehouse.memory_limit)
        try:
            result = work(con)
        finally:
            con.close()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - begun
        return result

    with writer_lock(settings.warehouse_path, what="benchmarks/nightly.py --direct"):
        for source in settings.sources:
            step("ingest", lambda con: (ingest_source(con, settings, source), export_analyst_copy(con, settings)))
        step("refresh_beliefs", lambda con: (refresh_beliefs(con, settings), export_analyst_copy(con, settings)))
        step("evaluate", lambda con: validate(con, settings))
        step("evaluate", lambda con: run_evals(con, settings, None, notify=owner_alert_hook(settings)))
        step("evaluate", lambda con: write_report(con, settings.warehouse_path.parent / "report.html",
                                                  SystemClock().now()), read_only=True)
        begun = time.perf_counter()
        result = publish(settings)
        timings["publish"] = time.perf_counter() - begun
        step("close", lambda con: (belief_summary(con, settings), latest_snapshot_audit(con)), read_only=True)
        begun = time.perf_counter()
        tell_owners(settings, SuiteOutcome(run_id="benchmark"))
        timings["close"] += time.perf_counter() - begun
    timings["total"] = time.perf_counter() - started
    return {"published": result.published, "content_hash": result.content_hash, "seconds": timings}


def _timed(command: list[str], env: dict | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="selfmodel.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server-url", default=None, help="PREFECT_API_URL of a running server (optional)")
    parser.add_argument("--direct", action="store_true", help="(internal) run the domain functions once, print JSON")
    args = parser.parse_args()
    config = str(Path(args.config).resolve())
    if args.direct:
        print(json.dumps(run_direct(config)))
        return

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    selfmodel = str(Path(sys.executable).with_name("selfmodel"))
    variants = {
        "direct": ([sys.executable, __file__, "--direct", "--config", config], env),
        "nightly": ([selfmodel, "nightly", "--config", config, "--json"], env),
    }
    if args.server_url:
        variants["nightly on a server"] = (variants["nightly"][0], {**env, "PREFECT_API_URL": args.server_url})
    print("warm-up run (not counted) ...", flush=True)
    _timed(*variants["nightly"])
    walls: dict[str, list[float]] = {name: [] for name in variants}
    hashes = set()
    for run in range(args.runs):
        for name, (command, run_env) in variants.items():
            wall, result = _timed(command, run_env)
            walls[name].append(wall)
            hashes.add(result.get("content_hash") or result.get("snapshot", {}).get("content_hash"))
            steps = (result["seconds"] if name == "direct"
                     else {s["step"]: round(s["seconds"], 2) for s in result["steps"]})
            print(f"run {run + 1} {name:<20} {wall:6.1f} s  "
                  + ", ".join(f"{k} {v:.1f}" for k, v in steps.items() if k != "total"), flush=True)
    medians = {name: statistics.median(values) for name, values in walls.items()}
    print()
    for name, value in medians.items():
        print(f"median {name:<20} {value:6.1f} s")
    for name in (n for n in medians if n != "direct"):
        overhead = medians[name] - medians["direct"]
        print(f"Prefect overhead ({name}): {overhead:.1f} s = {overhead / medians[name]:.0%} of its wall time")
    print(f"snapshot content hashes over all runs: {len(hashes)} distinct" + (" (identical)" if len(hashes) == 1 else ""))
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
