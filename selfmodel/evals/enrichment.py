"""Does enrichment help? An LLM judge (docs/reference.md "Enrichment judge"); needs the `llm` endpoint.

The held-out window is the predictive suite's newest: beliefs as of the cutoff T, and what users wrote in
(T, T + horizon]. Up to `eval.enrichment.sample_size` users who had a belief at the serving threshold at T and
wrote in the window each give one of those messages (seeded). For each, the answer model answers the raw query
and the query enriched exactly as the online reader serves it (`warehouse.online.enriched_query` over the
user's beliefs at T at the serving threshold, most confident first, at most `max_beliefs`); the judge model
sees the query and the two answers as A and B in a seeded random order (recorded per query) and names the
better one or a tie. A seeded `rejudge_fraction` of the judged queries is judged again with the order swapped.

Figures:
- enrichment_win_rate = (wins + ties / 2) / judged, where a win is the enriched answer preferred; its interval is
  a Wilson score interval at 1 - eval.alpha over the judged queries (ties as half a success). One query per user,
  so the judgements are independent.
- over_enrichment_rate = over-enriched / judged: the enriched answer lost AND a belief in its preamble did not
  hold in the window (the predictive suite's verdict on it: a one-value belief the window supports with another
  value, a many-value belief the window's observations lack). A belief the window says nothing about is not
  counted as wrong, so this is a lower bound.
- judge_self_agreement = re-judged queries whose swapped verdict maps to the same outcome / re-judged.

A query whose answer or verdict failed (an endpoint error, a malformed verdict) is not judged and says why; when
the budget (`llm.max_cost_usd_per_run`, shared with the run's other LLM work) stops the suite, what was judged
is reported and the run says it was stopped. Every text sent has been through `redact_pii` on this machine.
Each run records its tokens and estimated cost in `llm_runs` (purpose "judge").
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import sqrt
from statistics import NormalDist
from typing import Any, Callable, Literal

import duckdb
from pydantic import BaseModel

from selfmodel.evals import predictive
from selfmodel.llm.base import ChatModel, LLMError, Message, Usage
from selfmodel.llm.budget import Budget, estimate_usage
from selfmodel.llm.pii import redact_pii
from selfmodel.llm.runs import LLMRunRecord, new_run_id, record_run
from selfmodel.settings import Settings
from warehouse.db import execute, run, run_dicts
from warehouse.online import enriched_query

SUITE = "enrichment"
PURPOSE = "judge"
NO_ENDPOINT = "no llm endpoint configured"
MAX_REASON_CHARS = 300  # of the judge's reason, as shown
Outcome = Literal["win", "tie", "loss"]  # of the enriched answer
SCORE: dict[str, float] = {"win": 1.0, "tie": 0.5, "loss": 0.0}

ANSWER_SYSTEM = "You are a helpful assistant. Answer the user's message."
JUDGE_SYSTEM = (
    "You compare two answers, A and B, to the same user message. Decide which one serves this user better: "
    "more helpful, more accurate, better suited to them. Answer tie when neither is better. The order and the "
    "length of the answers must not sway you. Reply with the winner (A, B or tie) and one short sentence of reason."
)


class Verdict(BaseModel):
    """The judge's structured reply."""

    winner: Literal["A", "B", "tie"]
    reason: str


@dataclass
class Case:
    """One sampled query, as sent (redacted), and the beliefs its enriched form used."""

    user_id: str
    event_id: str
    query: str
    enriched: str
    beliefs: list[tuple[str, bool | None]]  # (key, held in the window; None: the window says nothing about it)
    enriched_is_a: bool  # the judge's first look shows the enriched answer as A


@dataclass
class CaseResult:
    case: Case
    outcome: Outcome | None = None
    reason: str | None = None  # the judge's reason
    not_judged: str | None = None  # why there is no outcome
    rejudged: Outcome | None = None  # the outcome with the order swapped (for a re-judged query)
    rejudge_failed: str | None = None
    answers: tuple[str, str] | None = None  # (raw, enriched), redacted, kept for the re-judgement

    @property
    def over_enriched(self) -> bool:
        return self.outcome == "loss" and any(held is False for _, held in self.case.beliefs)


@dataclass
class EnrichmentResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    results: list[tuple[str, str, float | None]] = field(default_factory=list)
    skipped: str | None = None


ENDPOINT_FAILURES = ("unavailable", "timeout", "auth")


class BudgetStop(Exception):
    """A request the budget refused: the suite stops there."""


def enriched_outcome(winner: str, enriched_is_a: bool) -> Outcome:
    """The verdict on the positions A/B mapped back to the enriched answer."""
    if winner == "tie":
        return "tie"
    return "win" if (winner == "A") == enriched_is_a else "loss"


def wilson_interval(successes: float, trials: int, level: float) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion (successes may be fractional: a tie counts half)."""
    if trials == 0:
        return None, None
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # at p = 0 or 1 the bound on that side is exactly 0 or 1 (the formula leaves a float rounding off it)
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == trials else min(1.0, centre + half))


def judge_messages(query: str, answer_a: str, answer_b: str) -> list[Message]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"User message:\n{query}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}"}]


def answer_messages(prompt: str) -> list[Message]:
    return [{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": prompt}]


# --- the sample ----------------------------------------------------------------------------------------------

@dataclass
class Sample:
    cutoff: datetime
    horizon_end: datetime
    candidates: int  # users there were to pick from
    cases: list[Case]
    pii_redacted: int


def load_sample(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: datetime | None = None) -> Sample | None:
    """The queries to judge at the predictive suite's newest cutoff; None when the warehouse has no events."""
    options, predictive_options = settings.eval.enrichment, settings.eval.predictive
    [(data_end,)] = run(con, "data_end", {"source": predictive_options.source, "as_of": as_of})
    if data_end is None:
        return None
    cutoff = predictive.backtest_cutoffs(data_end, predictive_options.cutoff_days, 1, 1)[0]
    window = predictive.Window(cutoff, cutoff + timedelta(days=predictive_options.horizon_days))
    threshold = settings.beliefs.serving_threshold
    predictive.create_beliefs_at_cutoff(con, settings, cutoff)
    try:
        picked = run_dicts(con, "enrichment_sample", {
            "cutoff": window.cutoff, "horizon_end": window.horizon_end, "source": predictive_options.source,
            "threshold": threshold, "seed": options.seed, "sample_size": options.sample_size})
        users = [row["user_id"] for row in picked]
        beliefs: dict[str, list[dict]] = {}
        for row in run_dicts(con, "enrichment_beliefs", {"users": users, "threshold": threshold}):
            beliefs.setdefault(row["user_id"], []).append(row)
        held = {(row["user_id"], row["key"], row["value"]): bool(row["holds"])
                for row in run_dicts(con, "predictive_judgements", {
                    "cutoff": window.cutoff, "horizon_end": window.horizon_end, "source": predictive_options.source})
                if row["user_id"] in beliefs}
    finally:
        execute(con, "drop table if exists beliefs_at_cutoff")
    order = random.Random(options.seed)
    cases, redacted = [], 0
    for row in picked:
        used = beliefs[row["user_id"]][: options.max_beliefs]
        query = redact_pii(row["text"][: settings.llm.max_message_chars])
        # Belief values can be the user's own words ("has said: ..."): the whole enriched query is redacted too.
        enriched = redact_pii(enriched_query(query.text, [(b["key"], b["value"]) for b in used]))
        redacted += sum(query.found.values()) + sum(enriched.found.values())
        cases.append(Case(row["user_id"], row["event_id"], query.text, enriched.text,
                          [(b["key"], held.get((b["user_id"], b["key"], b["value"]))) for b in used],
                          enriched_is_a=order.random() < 0.5))
    return Sample(window.cutoff, window.horizon_end, picked[0]["candidates"] if picked else 0, cases, redacted)


# --- asking the models ---------------------------------------------------------------------------------------

class Spending:
    """This suite's requests and usage (the budget may be shared with the run's other LLM work)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.requests = 0
        self.usage = Usage()
        self.stopped_by_budget = False
        # An endpoint that is down, hangs or refuses the key fails every later request the same way, after
        # paying its retries each time: the first such error ends the suite's asking.
        self.endpoint_failure: LLMError | None = None
        self._lock = threading.Lock()

    def request(self, messages: list[Message], max_output_tokens: int, send: Callable[[], Any],
                schema_chars: int = 0) -> Any:
        """Reserve the request's estimated cost, send it, settle what it cost; BudgetStop when refused."""
        failure = self.endpoint_failure
        if failure is not None:
            raise LLMError(failure.kind, f"not sent, after an earlier request: {failure}")
        estimate = estimate_usage(messages, max_output_tokens, schema_chars)
        if self.stopped_by_budget or not self.budget.reserve(estimate):
            self.stopped_by_budget = True
            raise BudgetStop()
        with self._lock:
            self.requests += 1
        try:
            reply = send()
        except LLMError as exc:
            self._settle(estimate, exc.usage)
            if exc.kind in ENDPOINT_FAILURES:
                self.endpoint_failure = self.endpoint_failure or exc
            raise
        except BaseException:
            self.budget.release(estimate)
            raise
        self._settle(estimate, reply.usage)
        return reply

    def _settle(self, estimate: Usage, actual: Usage) -> None:
        self.budget.settle(estimate, actual)
        with self._lock:
            self.usage = self.usage + actual


@dataclass
class Judging:
    answer_model: ChatModel
    judge_model: ChatModel
    spending: Spending
    max_output_tokens: int

    def answer(self, prompt: str) -> str:
        messages = answer_messages(prompt)
        reply = self.spending.request(messages, self.max_output_tokens, lambda: self.answer_model.complete(
            messages, max_output_tokens=self.max_output_tokens))
        return redact_pii(reply.text).text  # an answer may repeat what it was told

    def verdict(self, query: str, answer_a: str, answer_b: str) -> Verdict:
        messages = judge_messages(query, answer_a, answer_b)
        parsed = self.spending.request(messages, self.max_output_tokens, lambda: self.judge_model.parse(
            messages, Verdict, max_output_tokens=self.max_output_tokens), len(json.dumps(Verdict.model_json_schema())))
        return parsed.value

    def judge(self, case: Case, raw: str, enriched: str, enriched_is_a: bool) -> tuple[Outcome, str]:
        first, second = (enriched, raw) if enriched_is_a else (raw, enriched)
        verdict = self.verdict(case.query, first, second)
        # The reason is the judge's free text, shown in --json: it may quote the query, or invent personal data.
        return enriched_outcome(verdict.winner, enriched_is_a), redact_pii(verdict.reason).text[:MAX_REASON_CHARS]

    def first_look(self, case: Case) -> CaseResult:
        result = CaseResult(case)
        stage = "answer"
        try:
            result.answers = (self.answer(case.query), self.answer(case.enriched))
            stage = "judge"
            result.outcome, result.reason = self.judge(case, *result.answers, case.enriched_is_a)
        except BudgetStop:
            result.not_judged = "stopped by budget"
        except LLMError as exc:
            result.not_judged = f"{stage} failed ({exc.kind}): {exc}"
        return result

    def second_look(self, result: CaseResult) -> None:
        try:
            result.rejudged, _ = self.judge(result.case, *result.answers, not result.case.enriched_is_a)
        except BudgetStop:
            result.rejudge_failed = "stopped by budget"
        except LLMError as exc:
            result.rejudge_failed = f"judge failed ({exc.kind}): {exc}"


def judge_cases(cases: list[Case], judging: Judging, rejudge_fraction: float, seed: int, concurrency: int
                ) -> list[CaseResult]:
    """Every case answered twice and judged; then a seeded share of the judged ones judged again, swapped."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(judging.first_look, cases))
        judged = [r for r in results if r.outcome is not None]
        # a stream of its own: the same seed also draws the A/B order
        again = random.Random(f"{seed}:rejudge").sample(judged, round(rejudge_fraction * len(judged)))
        list(pool.map(judging.second_look, again))
    return results


# --- figures -------------------------------------------------------------------------------------------------

def enrichment_metrics(results: list[CaseResult], level: float) -> dict[str, Any]:
    judged = [r for r in results if r.outcome is not None]
    counts = {o: sum(1 for r in judged if r.outcome == o) for o in ("win", "tie", "loss")}
    score = counts["win"] + counts["tie"] / 2
    low, high = wilson_interval(score, len(judged), level)
    rejudged = [r for r in judged if r.rejudged is not None]
    over = sum(1 for r in judged if r.over_enriched)
    return {
        "enrichment_win_rate": score / len(judged) if judged else None,
        "enrichment_win_rate_low": low, "enrichment_win_rate_high": high, "interval_level": level,
        "over_enrichment_rate": over / len(judged) if judged else None,
        "judge_self_agreement": (sum(1 for r in rejudged if r.rejudged == r.outcome) / len(rejudged)
                                 if rejudged else None),
        "judged": len(judged), "sampled": len(results), "not_judged": len(results) - len(judged),
        "wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"], "over_enriched": over,
        "rejudged": len(rejudged), "enriched_shown_as_a": sum(1 for r in judged if r.case.enriched_is_a),
    }


def by_key_family(results: list[CaseResult]) -> dict[str, dict[str, int]]:
    """Per key family of the beliefs used (topic, role, fact...): judged queries that used it, their wins and
    losses, and those over-enriched by a belief of that family that did not hold. The pooled rates can pass
    while one family's wrong beliefs hurt every answer they reach."""
    families: dict[str, dict[str, int]] = {}
    for r in results:
        if r.outcome is None:
            continue
        for family in sorted({key.split("@")[0] for key, _ in r.case.beliefs}):
            counts = families.setdefault(family, {"judged": 0, "wins": 0, "losses": 0, "over_enriched": 0})
            counts["judged"] += 1
            counts["wins"] += r.outcome == "win"
            counts["losses"] += r.outcome == "loss"
            wrong = any(held is False and key.split("@")[0] == family for key, held in r.case.beliefs)
            counts["over_enriched"] += r.outcome == "loss" and wrong
    return dict(sorted(families.items()))


def case_results(results: list[CaseResult]) -> list[tuple[str, str, float | None]]:
    """eval_results rows: per user (one query each) the enriched answer's score and how it was judged."""
    rows: list[tuple[str, str, float | None]] = []
    for r in results:
        case_id = f"user:{r.case.user_id}"
        rows.append((case_id, "judged", float(r.outcome is not None)))
        if r.outcome is not None:
            rows += [(case_id, "enriched_score", SCORE[r.outcome]), (case_id, "enriched_shown_as_a",
                     float(r.case.enriched_is_a)), (case_id, "over_enriched", float(r.over_enriched))]
        if r.rejudged is not None:
            rows.append((case_id, "rejudge_agrees", float(r.rejudged == r.outcome)))
    return rows


def case_details(r: CaseResult) -> dict[str, Any]:
    """What the JSON output says per query (no user text: ids, positions, outcomes and reasons)."""
    return {"user_id": r.case.user_id, "event_id": r.case.event_id, "enriched_shown_as": "A" if r.case.enriched_is_a
            else "B", "outcome": r.outcome, "reason": r.reason, "not_judged": r.not_judged, "rejudged": r.rejudged,
            "rejudge_failed": r.rejudge_failed, "over_enriched": r.over_enriched,
            "beliefs": [{"key": key, "held": held} for key, held in r.case.beliefs]}


# --- the suite -----------------------------------------------------------------------------------------------

def _model(settings: Settings, name: str | None) -> ChatModel:
    from selfmodel.llm.openai_client import chat_model_from_settings  # imports openai: only when the suite runs

    return chat_model_from_settings(settings.llm.model_copy(update={"model": name or settings.llm.model}))


def run_enrichment(con: duckdb.DuckDBPyConnection, settings: Settings, started: datetime, clock,
                   as_of: datetime | None = None, budget: Budget | None = None) -> EnrichmentResult:
    """The enrichment suite's figures; skipped without an endpoint, events or anyone to judge."""
    if settings.llm is None:
        return EnrichmentResult(skipped=NO_ENDPOINT)
    options = settings.eval.enrichment
    sample = load_sample(con, settings, as_of)
    if sample is None:
        return EnrichmentResult(skipped="the warehouse has no events")
    if not sample.cases:
        return EnrichmentResult(skipped="no user with a belief at the serving threshold at the cutoff wrote in "
                                        "the held-out window")
    budget = budget or Budget.from_settings(settings.llm)
    answer_model, judge_model = _model(settings, options.answer_model), _model(settings, options.judge_model)
    spending = Spending(budget)
    results = judge_cases(sample.cases, Judging(answer_model, judge_model, spending, options.max_output_tokens),
                          options.rejudge_fraction, options.seed, settings.llm.concurrency)
    cost = round(budget.cost(spending.usage), 6)
    metrics = enrichment_metrics(results, 1 - settings.eval.alpha) | {
        "candidates": sample.candidates, "requests": spending.requests, "input_tokens": spending.usage.input_tokens,
        "output_tokens": spending.usage.output_tokens, "cost_usd": cost, "stopped_by_budget": spending.stopped_by_budget,
        "pii_redacted": sample.pii_redacted}
    run_id = new_run_id(PURPOSE, started)
    record_run(con, LLMRunRecord(
        run_id, PURPOSE, judge_model.model, started, clock.now(), spending.requests, spending.usage.input_tokens,
        spending.usage.output_tokens, cost, budget.cap_usd, spending.stopped_by_budget,
        {"suite": SUITE, "answer_model": answer_model.model, "judge_model": judge_model.model,
         "judged": metrics["judged"], "sampled": metrics["sampled"], "rejudged": metrics["rejudged"]}))
    reasons: dict[str, int] = {}
    for r in results:
        if r.not_judged:
            reasons[r.not_judged] = reasons.get(r.not_judged, 0) + 1
    return EnrichmentResult(metrics, {
        "cutoff": sample.cutoff.isoformat(), "horizon_end": sample.horizon_end.isoformat(),
        "answer_model": answer_model.model, "judge_model": judge_model.model, "llm_run_id": run_id,
        "interval": f"Wilson score, {1 - settings.eval.alpha:.0%}", "not_judged_reasons": reasons,
        "by_key_family": by_key_family(results),
        "cases": [case_details(r) for r in results]}, case_results(results))


def summary_lines(metrics: dict[str, Any], details: dict[str, Any]) -> list[str]:
    """The suite's figures for the terminal: win rate [interval], over-enrichment, self-agreement, judged, cost."""
    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    low, high = metrics.get("enrichment_win_rate_low"), metrics.get("enrichment_win_rate_high")
    interval = "" if low is None else f" [{low:.3f}, {high:.3f}] ({details.get('interval', 'Wilson score')})"
    lines = [
        f"win rate {number(metrics.get('enrichment_win_rate'))}{interval}: {metrics.get('wins')} wins, "
        f"{metrics.get('ties')} ties, {metrics.get('losses')} losses",
        f"over-enrichment {number(metrics.get('over_enrichment_rate'))} ({metrics.get('over_enriched')} lost with a "
        f"belief the window contradicted), judge self-agreement {number(metrics.get('judge_self_agreement'))} "
        f"({metrics.get('rejudged')} re-judged, order swapped)",
        f"judged {metrics.get('judged')} of {metrics.get('sampled')} sampled ({metrics.get('candidates')} users to "
        f"pick from), cost ${metrics.get('cost_usd', 0):.4f} ({metrics.get('requests')} requests, "
        f"{metrics.get('input_tokens')} + {metrics.get('output_tokens')} tokens)",
    ]
    lines += [f"  {family:<16} judged {c['judged']}, {c['wins']} wins, {c['losses']} losses, "
              f"{c['over_enriched']} over-enriched by a {family} belief that did not hold"
              for family, c in details.get("by_key_family", {}).items()]
    if metrics.get("stopped_by_budget"):
        lines.append("STOPPED BY BUDGET (llm.max_cost_usd_per_run): the figures cover what was judged before")
    lines += [f"not judged: {count} x {reason}" for reason, count in sorted(details.get("not_judged_reasons", {}).items())]
    return lines
