"""The success bar (expectations/bar.yaml): thresholds per suite and metric, and regression tolerances."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class Bar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suites: dict[str, dict[str, Threshold]] = Field(default_factory=dict)
    regression_tolerance: dict[str, float] = Field(default_factory=dict)

    def verdict(self, suite: str, metrics: dict) -> tuple[bool, dict[str, dict]]:
        """(passed, {metric: {op, threshold, value, passed}}) for a suite's metrics.

        A suite the bar says nothing about fails: a run can only pass a bar that was written down.
        """
        if not self.suites.get(suite):
            return False, {}
        results = {}
        for metric, threshold in self.suites.get(suite, {}).items():
            value = metrics.get(metric)
            results[metric] = {
                "op": ">=" if threshold.min is not None else "<=",
                "threshold": threshold.min if threshold.min is not None else threshold.max,
                "value": value,
                "passed": threshold.check(value),
            }
        return all(r["passed"] for r in results.values()), results


def load_bar(path: Path) -> Bar:
    if not path.exists():
        raise FileNotFoundError(f"success bar {path} not found: the evals need a written bar")
    return Bar.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
