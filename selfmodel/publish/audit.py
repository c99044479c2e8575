"""The audit a snapshot must pass before it is published: its own files, counts and confidences, and the
warehouse's latest expectation and eval runs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from selfmodel.settings import Settings
from warehouse.db import run_dicts
from warehouse.online import open_snapshot
from warehouse.snapshot_format import BELIEFS_FILE, SERVED_FILE, SnapshotError
from selfmodel.publish.folder import _distinct_users, _served_differs


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Audit:
    checks: list[Check] = field(default_factory=list)
    eval_runs: list[dict] = field(default_factory=list)
    expectations: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def reason(self) -> str | None:
        failed = [f"{check.name}: {check.detail}" for check in self.checks if not check.passed]
        return "; ".join(failed) if failed else None

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def to_json(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(check) for check in self.checks],
                "eval": self.eval_runs, "expectations": self.expectations}


def _audit_snapshot(audit: Audit, staged: Path, table: pa.Table, counts: dict, floor: float) -> None:
    """Checks on the staged files themselves, read back through the online reader."""
    audit.add("beliefs", table.num_rows > 0,
              f"{table.num_rows} beliefs at or above {floor}" if table.num_rows
              else f"no beliefs in force at or above {floor}: the snapshot would make every user a cold start")
    audit.add("key_families", counts["unknown_family"] == 0,
              "every belief's key family is in beliefs.keys" if not counts["unknown_family"]
              else f"{counts['unknown_family']} beliefs have a key family missing from beliefs.keys")
    try:
        loaded = open_snapshot(staged, verify="always")  # checksums, row and user counts against the manifest
    except SnapshotError as exc:
        audit.add("checksums", False, str(exc))
        return
    audit.add("checksums", True, f"{BELIEFS_FILE} and {SERVED_FILE} match their checksums; the online reader opens them")
    differs = _served_differs(staged / SERVED_FILE, table)
    audit.add("served_file", differs is None,
              f"{SERVED_FILE} holds exactly the beliefs of {BELIEFS_FILE}" if differs is None
              else f"{SERVED_FILE} differs from {BELIEFS_FILE}: {differs}")
    expected_users = _distinct_users(table)
    audit.add("row_count", loaded.rows == table.num_rows,
              f"{loaded.rows} rows in the file, {table.num_rows} beliefs selected in the warehouse"
              + ("" if floor == 0 else f" ({counts['in_force']} in force, floor {floor})"))
    audit.add("user_count", loaded.users == expected_users,
              f"{loaded.users} users in the file, {expected_users} in the warehouse")
    if table.num_rows:
        confidence = table.column("confidence")
        bounds = pc.min_max(confidence).as_py()
        nans = pc.sum(pc.is_nan(confidence)).as_py() or 0
        in_range = nans == 0 and bounds["min"] >= 0.0 and bounds["max"] < 1.0
        audit.add("confidence_range", in_range,
                  f"confidences within [{bounds['min']:.4g}, {bounds['max']:.4g}]" + (f", {nans} NaN" if nans else ""))
        least = pc.min(table.column("evidence_count")).as_py()
        audit.add("evidence_counts", least >= 1, f"the fewest observations behind a belief: {least}")
        users, confidence = table.column("user_id"), table.column("confidence")
        previous, following = slice(0, table.num_rows - 1), slice(1, table.num_rows)
        same_user = pc.equal(users[following], users[previous])
        user_order = pc.sum(pc.less(users[following], users[previous])).as_py() or 0
        rising = pc.sum(pc.and_(same_user, pc.greater(confidence[following], confidence[previous]))).as_py() or 0
        audit.add("order", user_order == 0 and rising == 0,
                  "sorted by user_id, each user's beliefs most confident first" if not (user_order or rising)
                  else f"{user_order} rows out of user order, {rising} rows more confident than the one before")


def _audit_quality(audit: Audit, con, settings: Settings, refresh: dict, fresh_suites: list[str] | None = None
                   ) -> None:
    """The blocking expectations and the eval bar, as recorded by the nightly evaluation."""
    require = settings.snapshots.require_eval
    validations = run_dicts(con, "latest_expectation_runs")
    failing = [v for v in validations if v["blocking_failures"]]
    suites = sorted({v["suite"] for v in validations})
    audit.expectations = {
        suite: {
            "assets": sum(1 for v in validations if v["suite"] == suite),
            "blocking_failures": sum(v["blocking_failures"] for v in validations if v["suite"] == suite),
            "warnings": sum(v["warnings"] for v in validations if v["suite"] == suite),
            "last_validated_at": max(v["validated_at"] for v in validations if v["suite"] == suite).isoformat(),
        }
        for suite in suites
    }
    if not validations:
        audit.add("expectations", not require,
                  "no expectation validation recorded" + (": run `selfmodel expectations` first"
                                                          if require else " (snapshots.require_eval is off)"))
    else:
        shown = ", ".join(f"{v['suite']}/{v['asset']} ({v['blocking_failures']})" for v in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        audit.add("expectations", not failing,
                  f"latest validations of {len(validations)} suite/asset pairs have no blocking failure" if not failing
                  else f"blocking failures in the latest validation of {shown}{more}")

    evals = run_dicts(con, "latest_eval_runs")
    from selfmodel.evals.enrichment import SUITE as ENRICHMENT

    # The enrichment judge runs only when asked for (it needs a paid endpoint): a run of it by hand neither
    # blocks a publish nor goes stale, unless the judge is enabled (then the nightly runs it) or required.
    if not settings.eval.enrichment.enabled and ENRICHMENT not in settings.snapshots.required_eval_suites:
        evals = [e for e in evals if e["suite"] != ENRICHMENT]
    audit.eval_runs = [
        {"suite": e["suite"], "run_id": e["run_id"], "passed": e["passed"], "ended_at": e["ended_at"].isoformat(),
         "data_as_of": e["data_as_of"].isoformat() if e["data_as_of"] else None,
         "metrics": json.loads(e["metrics"]) if isinstance(e["metrics"], str) else e["metrics"]}
        for e in evals
    ]
    missing = sorted(set(settings.snapshots.required_eval_suites) - {e["suite"] for e in evals})
    if not evals:
        audit.add("eval", not require,
                  "no eval run recorded" + (": run `selfmodel eval` first" if require
                                            else " (snapshots.require_eval is off)"))
        return
    failed = [e for e in evals if not e["passed"]]
    audit.add("eval", not failed and not missing,
              "; ".join(filter(None, [
                  ", ".join(f"suite {e['suite']} failed its bar (run {e['run_id']})" for e in failed),
                  f"required eval suite(s) never ran: {', '.join(missing)}" if missing else "",
              ])) or f"latest runs of {len(evals)} eval suite(s) passed their bar")
    if settings.snapshots.require_fresh_eval:
        judged = [e for e in evals if fresh_suites is None or e["suite"] in fresh_suites]
        stale = [e for e in judged if e["ended_at"] < refresh["ended_at"]]
        left_out = sorted({e["suite"] for e in evals} - {e["suite"] for e in judged})
        audit.add("eval_fresh", not stale,
                  (f"every latest eval run{'' if fresh_suites is None else ' of ' + ', '.join(sorted(fresh_suites))} "
                   f"ended after the refresh {refresh['refresh_id']}"
                   + (f" ({', '.join(left_out)} not run this time: judged by their latest run)" if left_out else ""))
                  if not stale
                  else f"beliefs were refreshed at {refresh['ended_at'].isoformat()}, after the latest run of "
                       + ", ".join(e["suite"] for e in stale) + ": run `selfmodel eval` again")
