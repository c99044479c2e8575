"""The parameters beliefs are computed with: the config's key policies, with an adopted calibration's fitted
values in place of them (docs/reference.md "Calibration").

A parameter set is identified by a hash of its content. Each refresh records the set it folded with
(tables belief_parameters, evidence_weights, base_rates; refresh_runs.parameter_set); the `beliefs` view reads
the latest refresh's set, and a refresh whose set differs from the last one re-folds every group.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

import duckdb
import pyarrow as pa

from selfmodel.beliefs.model import CalibrationMap, KeyPolicy
from selfmodel.settings import Settings
from warehouse.db import run, run_dicts, run_script


@dataclass(frozen=True)
class ParameterSet:
    policies: dict[str, KeyPolicy]  # key family -> policy
    calibration_id: str | None = None  # the calibration whose fitted families are in here

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def policy(self, family: str) -> KeyPolicy | None:
        return self.policies.get(family)

    def to_json(self) -> dict:
        return {"calibration_id": self.calibration_id,
                "families": {family: policy_to_json(policy) for family, policy in sorted(self.policies.items())}}


def policy_to_json(policy: KeyPolicy) -> dict:
    return {
        "cardinality": policy.cardinality,
        "half_life_days": policy.half_life_days,
        "prior": policy.prior,
        "repeat_discount": policy.repeat_discount,
        "kind_weights": dict(sorted(policy.kind_weights.items())),
        "base_rates": dict(sorted(policy.base_rates.items())),
        "map": [policy.calibration.a, policy.calibration.b, policy.calibration.c],
    }


def policy_from_json(data: dict) -> KeyPolicy:
    a, b, c = data.get("map", (1.0, 1.0, 0.0))
    return KeyPolicy(data["cardinality"], float(data["half_life_days"]), float(data["prior"]),
                     repeat_discount=float(data.get("repeat_discount", 1.0)),
                     kind_weights={k: float(v) for k, v in data.get("kind_weights", {}).items()},
                     base_rates={k: float(v) for k, v in data.get("base_rates", {}).items()},
                     calibration=CalibrationMap(float(a), float(b), float(c)))


def configured(settings: Settings) -> ParameterSet:
    """The config's own key policies (beliefs.keys), nothing fitted."""
    return ParameterSet({family: KeyPolicy(key.cardinality, key.half_life_days, key.prior)
                         for family, key in settings.beliefs.keys.items()})


def with_calibration(base: ParameterSet, calibration_id: str | None, fitted: dict[str, KeyPolicy]) -> ParameterSet:
    """`base` with the fitted families in place of its own. A fitted family whose cardinality the config has
    since changed is left out: what was fitted for one-valued keys says nothing about many-valued ones."""
    policies = dict(base.policies)
    used = False
    for family, policy in fitted.items():
        if family in policies and policies[family].cardinality == policy.cardinality:
            policies[family] = policy
            used = True
    return ParameterSet(policies, calibration_id if used else None)


def adopted_calibration(con: duckdb.DuckDBPyConnection) -> tuple[str | None, dict[str, KeyPolicy]]:
    """The calibration in force (the newest adoption) and its adopted families' fitted policies."""
    rows = run_dicts(con, "calibration_in_force")
    if not rows or rows[0]["calibration_id"] is None:
        return None, {}
    row = rows[0]
    parameters = json.loads(row["parameters"])
    return row["calibration_id"], {family: policy_from_json(parameters[family]["fitted"])
                                   for family in row["families_adopted"] if family in parameters}


def in_force(con: duckdb.DuckDBPyConnection, settings: Settings) -> ParameterSet:
    """What the next refresh folds with: the config's policies with the adopted calibration's fits (but for the
    families calibration.exclude keeps at the config's values)."""
    calibration_id, fitted = adopted_calibration(con)
    kept = set(settings.calibration.exclude)
    return with_calibration(configured(settings), calibration_id,
                            {family: policy for family, policy in fitted.items() if family not in kept})


def of_last_refresh(con: duckdb.DuckDBPyConnection) -> ParameterSet | None:
    """The set the latest refresh folded with (what the `beliefs` view computes with); None before any
    refresh, or for a refresh made before parameter sets were recorded."""
    rows = run(con, "last_refresh_parameter_set")
    if not rows or rows[0][0] is None:
        return None
    return load(con, rows[0][0])


def load(con: duckdb.DuckDBPyConnection, parameter_set: str) -> ParameterSet | None:
    families = run_dicts(con, "parameter_set_families", {"parameter_set": parameter_set})
    if not families:
        return None
    weights = run_dicts(con, "parameter_set_weights", {"parameter_set": parameter_set})
    rates = run_dicts(con, "parameter_set_base_rates", {"parameter_set": parameter_set})
    policies = {}
    for row in families:
        family = row["family"]
        policies[family] = KeyPolicy(
            row["cardinality"], row["half_life_days"], row["prior"], repeat_discount=row["repeat_discount"],
            kind_weights={w["kind"]: w["weight"] for w in weights if w["family"] == family},
            base_rates={r["value"]: r["base_rate"] for r in rates if r["family"] == family},
            calibration=CalibrationMap(row["map_a"], row["map_b"], row["map_c"]))
    loaded = ParameterSet(policies, families[0]["calibration_id"])
    return loaded


def store(con: duckdb.DuckDBPyConnection, parameters: ParameterSet) -> str:
    """Record the set (once; it is identified by its content) and return its id."""
    set_id = parameters.id
    if run(con, "parameter_set_families", {"parameter_set": set_id}):
        return set_id
    tables = arrow_tables(parameters)
    for name, table in tables.items():
        con.register(f"new_{name}", table)
    try:
        run_script(con, "insert_parameter_set", {"parameter_set": set_id, "calibration_id": parameters.calibration_id})
    finally:
        for name in tables:
            con.unregister(f"new_{name}")
    return set_id


def arrow_tables(parameters: ParameterSet) -> dict[str, pa.Table]:
    """key_policies, kind_weights and value_base_rates: what the SQL joins the set as (Arrow tables, named
    apart from the warehouse's own tables that record every set)."""
    policies = parameters.policies
    families = list(policies)
    weights = [(f, kind, w) for f, p in policies.items() for kind, w in sorted(p.kind_weights.items())]
    rates = [(f, value, r) for f, p in policies.items() for value, r in sorted(p.base_rates.items())]
    return {
        "key_policies": pa.table({
            "family": pa.array(families, pa.string()),
            "cardinality": pa.array([policies[f].cardinality for f in families], pa.string()),
            "half_life_days": pa.array([policies[f].half_life_days for f in families], pa.float64()),
            "prior": pa.array([policies[f].prior for f in families], pa.float64()),
            "repeat_discount": pa.array([policies[f].repeat_discount for f in families], pa.float64()),
            "map_a": pa.array([policies[f].calibration.a for f in families], pa.float64()),
            "map_b": pa.array([policies[f].calibration.b for f in families], pa.float64()),
            "map_c": pa.array([policies[f].calibration.c for f in families], pa.float64()),
        }),
        "kind_weights": pa.table({
            "family": pa.array([w[0] for w in weights], pa.string()),
            "kind": pa.array([w[1] for w in weights], pa.string()),
            "weight": pa.array([w[2] for w in weights], pa.float64()),
        }),
        "value_base_rates": pa.table({
            "family": pa.array([r[0] for r in rates], pa.string()),
            "value": pa.array([r[1] for r in rates], pa.string()),
            "base_rate": pa.array([r[2] for r in rates], pa.float64()),
        }),
    }


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, parameters: ParameterSet) -> Iterator[None]:
    """The set as the Arrow tables key_policies, kind_weights and value_base_rates for the queries that compute
    confidence (fold, beliefs at a cutoff or an as-of, snapshot counts)."""
    tables = arrow_tables(parameters)
    for name, table in tables.items():
        con.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            try:
                con.unregister(name)
            except duckdb.TransactionException:
                # The block's error aborted the caller's transaction; DuckDB refuses even this until the rollback.
                # Left registered (a few rows, replaced by the next `registered`), so that error is the one raised.
                pass


def adopt(con: duckdb.DuckDBPyConnection, calibration_id: str | None, at: datetime, reason: str) -> None:
    run(con, "insert_calibration_adoption", {"adopted_at": at, "calibration_id": calibration_id, "reason": reason})
