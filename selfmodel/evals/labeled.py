"""Labeled eval sets: committed cases saying what should (or must not) be believed about a real user.

A case file (YAML) holds `suite`, `source` (the source whose data the cases need; the suite is skipped
when the warehouse has no events from it), `criterion` (how a case passes, in words) and `cases`:

    - id: qc-topic-26
      user_id: "26"
      as_of: 2018-09-01T00:00:00Z
      expect:
        - {key: topic, value: quantum-gate, min_confidence: 0.6}
        - {key: role, absent: true}
        - {key: fact, value_from_label: {label: persona, context: "dlg:...", sha256: 3f9a0c1d2e4b}, min_confidence: 0.3}
      why: answers dozens of quantum-gate questions

An expectation {key, value, min_confidence} passes when the user's belief key=value, recomputed as of
the case's as_of, has at least that confidence. {key, absent: true} passes when no value of the key
reaches the serving threshold. `fact` values match by meaning, not spelling: a believed fact matches an
expected one when they share at least 60 % of their content words (Jaccard). `value_from_label` takes
the expected value from the labels table at eval time (persona lines stay out of this repository): the
line of that label and context whose sha256 starts with the given hex prefix. Not a position: labels
have no order (rows inserted in one statement land in any order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from selfmodel.beliefs.read import user_beliefs
from selfmodel.settings import Settings

FACT_MATCH = 0.6
STOPWORDS = {"i", "a", "an", "the", "am", "is", "are", "my", "to", "of", "and", "in", "on", "for", "have", "has", "with"}


class LabelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    context: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{8,64}$")  # hex prefix of the line's sha256 (utf-8)


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    value: str | None = None
    value_from_label: LabelRef | None = None
    min_confidence: float | None = Field(default=None, ge=0, lt=1)
    absent: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> "Expectation":
        if self.absent == (self.value is not None or self.value_from_label is not None):
            raise ValueError("an expectation is either {key, absent: true} or {key, value, min_confidence}")
        if not self.absent and self.min_confidence is None:
            raise ValueError("a value expectation needs min_confidence")
        return self


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    user_id: str
    as_of: datetime
    expect: list[Expectation] = Field(min_length=1)
    why: str = Field(min_length=3)
    tags: list[str] = Field(default_factory=list)  # e.g. cold_start, bot, switched, sarcasm, non_english

    @model_validator(mode="after")
    def _aware(self) -> "Case":
        if self.as_of.tzinfo is None:
            self.as_of = self.as_of.replace(tzinfo=timezone.utc)
        return self


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suite: str
    source: str
    criterion: str
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    case_id: str
    passed: bool
    checks: list[dict] = field(default_factory=list)


def load_case_file(path: Path) -> CaseFile:
    return CaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS}


def facts_match(believed: str, expected: str) -> bool:
    a, b = content_words(believed), content_words(expected)
    return bool(a and b) and len(a & b) / len(a | b) >= FACT_MATCH


def resolve_value(con: duckdb.DuckDBPyConnection, source: str, user_id: str, expectation: Expectation) -> str | None:
    if expectation.value is not None:
        return expectation.value
    ref = expectation.value_from_label
    rows = con.execute(
        "select distinct value from labels where source = ? and user_id = ? and label = ? "
        "and context is not distinct from ? and starts_with(sha256(value), ?)",
        [source, user_id, ref.label, ref.context, ref.sha256],
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None  # none, or a prefix too short to tell lines apart


def evaluate_case(con: duckdb.DuckDBPyConnection, settings: Settings, source: str, case: Case) -> CaseResult:
    beliefs = user_beliefs(con, settings, case.user_id, as_of=case.as_of)["beliefs"]
    threshold = settings.beliefs.serving_threshold
    checks = []
    for expectation in case.expect:
        of_key = [b for b in beliefs if b["key"] == expectation.key]
        if expectation.absent:
            served = [b for b in of_key if b["confidence"] >= threshold]
            checks.append({"key": expectation.key, "absent": True, "passed": not served,
                           "found": [f"{b['value']} ({b['confidence']:.2f})" for b in served]})
            continue
        expected = resolve_value(con, source, case.user_id, expectation)
        if expected is None:
            checks.append({"key": expectation.key, "value": None, "passed": False,
                           "found": ["the label this expectation refers to is missing"]})
            continue
        if expectation.key == "fact":
            matching = [b for b in of_key if facts_match(b["value"], expected)]
        else:
            matching = [b for b in of_key if b["value"] == expected]
        best = max((b["confidence"] for b in matching), default=0.0)
        checks.append({"key": expectation.key, "value": expected, "min_confidence": expectation.min_confidence,
                       "confidence": best, "passed": best >= expectation.min_confidence})
    return CaseResult(case.id, all(check["passed"] for check in checks), checks)


def has_source_data(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    return con.execute("select count(*) from events where source = ?", [source]).fetchone()[0] > 0


def labeled_metrics(results: list[CaseResult]) -> dict[str, Any]:
    checks = [check for result in results for check in result.checks]
    return {
        "case_pass_rate": sum(r.passed for r in results) / len(results) if results else None,
        "expectation_pass_rate": sum(c["passed"] for c in checks) / len(checks) if checks else None,
        "cases": len(results),
        "cases_failed": sum(not r.passed for r in results),
    }
