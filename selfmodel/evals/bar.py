"""The success bar (expectations/bar.yaml): thresholds per suite and metric, per key family, and regression
tolerances.

A suite's entry maps metric names to `{min: x}` or `{max: x}`; `per_key` (optional) holds thresholds every key
family must meet once it has `min_judged` judgements, with per-family overrides under `families`:

    predictive:
      ece: {max: 0.10}
      per_key: {min_judged: 100, ece: {max: 0.05}, families: {topic: {precision_at_threshold: {min: 0.5}}}}

A suite's own `min_judged` (optional) applies to its `judged` metric: a run that judged fewer is too small to
judge, and does not pass (the enrichment judge: `enrichment: {min_judged: 30, enrichment_win_rate: {min: 0.55}}`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

TOO_SMALL = "too_small"


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> "Threshold":
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self

    def check(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.min if self.min is not None else value <= self.max

    def entry(self, value: float | None) -> dict[str, Any]:
        """{op, threshold, value, passed}: one line of a verdict."""
        return {"op": ">=" if self.min is not None else "<=",
                "threshold": self.min if self.min is not None else self.max,
                "value": value, "passed": self.check(value)}


class PerKeyBar(BaseModel):
    """Thresholds on each key family's metrics (the predictive suite's details["per_key"])."""

    model_config = ConfigDict(extra="forbid")
    # A family with fewer judgements is too small to judge: reported, neither passed nor failed.
    min_judged: int = Field(default=100, ge=1)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    # family -> metric -> threshold, over (or beside) the thresholds every family shares
    families: dict[str, dict[str, Threshold]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _metrics_beside_settings(cls, data: Any) -> Any:
        """In the file the metrics sit beside min_judged and families, as a suite's metrics do."""
        if not isinstance(data, dict) or "thresholds" in data:
            return data
        settings = {k: v for k, v in data.items() if k in ("min_judged", "families")}
        return {**settings, "thresholds": {k: v for k, v in data.items() if k not in settings}}

    def for_family(self, name: str) -> dict[str, Threshold]:
        return {**self.thresholds, **self.families.get(name, {})}


class SuiteBar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    per_key: PerKeyBar | None = None
    # A run whose `judged` metric is below this is too small to judge (it does not pass).
    min_judged: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _metrics_beside_per_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "thresholds" in data:
            return data
        settings = {k: data[k] for k in ("per_key", "min_judged") if k in data}
        return {**settings, "thresholds": {k: v for k, v in data.items() if k not in settings}}

    def __bool__(self) -> bool:
        return bool(self.thresholds or (self.per_key and (self.per_key.thresholds or self.per_key.families)))


class Bar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suites: dict[str, SuiteBar] = Field(default_factory=dict)
    regression_tolerance: dict[str, float] = Field(default_factory=dict)

    def verdict(self, suite: str, metrics: dict, per_key: dict[str, dict] | None = None
                ) -> tuple[bool, dict[str, dict]]:
        """(passed, {check: {op, threshold, value, passed}}) for a suite's metrics and its key families.

        A suite the bar says nothing about fails: a run can only pass a bar that was written down. A key
        family's check is named `metric[family]`; a family with fewer than `min_judged` judgements gets
        `passed: None, status: "too_small"`: it neither passes nor fails the suite. A suite passes when every
        check it could judge passed and there was at least one, so a run below the suite's own `min_judged`
        (every check too small) does not pass.
        """
        written = self.suites.get(suite)
        if not written:
            return False, {}
        results = {metric: threshold.entry(metrics.get(metric)) for metric, threshold in written.thresholds.items()}
        judged = metrics.get("judged") or 0
        if written.min_judged is not None and judged < written.min_judged:
            results = {metric: entry | {"passed": None, "status": TOO_SMALL, "judged": judged,
                                        "min_judged": written.min_judged} for metric, entry in results.items()}
        if written.per_key is not None:
            results |= _per_key_verdict(written.per_key, per_key or {})
        judged = [r["passed"] for r in results.values() if r.get("status") != TOO_SMALL]
        return bool(judged) and all(judged), results


def _per_key_verdict(bar: PerKeyBar, per_key: dict[str, dict]) -> dict[str, dict]:
    results = {}
    for name in sorted(per_key.keys() | bar.families.keys()):
        values = per_key.get(name, {})
        judged = values.get("beliefs_judged") or 0
        for metric, threshold in bar.for_family(name).items():
            entry = threshold.entry(values.get(metric)) | {"family": name, "judged": judged}
            if judged < bar.min_judged:
                entry |= {"passed": None, "status": TOO_SMALL, "min_judged": bar.min_judged}
            results[f"{metric}[{name}]"] = entry
    return results


def is_too_small(check: dict) -> bool:
    """A verdict entry for a key family with too few judgements to judge."""
    return check.get("status") == TOO_SMALL


def load_bar(path: Path) -> Bar:
    if not path.exists():
        raise FileNotFoundError(f"success bar {path} not found: the evals need a written bar")
    return Bar.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
