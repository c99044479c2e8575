"""The record of a run that called a language model (table `llm_runs`): tokens, estimated cost, the cap."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime

from selfmodel.llm.budget import Budget


def new_run_id(purpose: str, started_at: datetime) -> str:
    return f"{purpose}-{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class LLMRunRecord:
    run_id: str
    purpose: str  # extract | judge | ...
    model: str
    started_at: datetime
    ended_at: datetime
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    max_cost_usd: float | None
    stopped_by_budget: bool
    details: dict = field(default_factory=dict)

    @classmethod
    def of(cls, run_id: str, purpose: str, model: str, started_at: datetime, ended_at: datetime, requests: int,
           budget: Budget, details: dict | None = None) -> "LLMRunRecord":
        """The record of a run whose spending `budget` accounted for."""
        return cls(run_id, purpose, model, started_at, ended_at, requests, budget.spent.input_tokens,
                   budget.spent.output_tokens, round(budget.spent_usd, 6), budget.cap_usd, budget.stopped,
                   details or {})

    def to_json(self) -> dict:
        return {**asdict(self), "started_at": self.started_at.isoformat(), "ended_at": self.ended_at.isoformat()}


def record_run(con, record: LLMRunRecord) -> None:
    """Store the record in `llm_runs` (con: a warehouse connection, warehouse.db.connect)."""
    from warehouse.db import run

    run(con, "insert_llm_run", {**asdict(record), "details": json.dumps(record.details, sort_keys=True)})
