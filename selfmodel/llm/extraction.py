"""The LLM extractor in the warehouse: ask the model about pending user messages, cache what it answers, and
turn cached answers into observations (docs/reference.md "LLM extractor").

Two steps of a refresh (selfmodel.beliefs.refresh), when `beliefs.extractors.llm.enabled`:

1. `ask_pending`, before the refresh's transaction: every distinct message text with no cached answer for
   this model and prompt version (llm_pending_messages.sql) is asked about, newest first: through the Batch
   API when more than `llm.batch_threshold` are pending, else as direct requests, `llm.concurrency` at a time.
   Only `message` events (what users wrote themselves) are read, and only after PII redaction does a text
   leave this machine. Each answer is grounded (selfmodel.llm.extract) and cached at once
   (llm_extractions, keyed by sha256 of the text, model and prompt version), so a re-run, a backfill or a
   full refresh never pays twice and a run killed half-way loses nothing it paid for. The run's budget
   (`llm.max_cost_usd_per_run`) is reserved request by request: at the cap the run stops asking, and what it
   did not ask stays pending for the next run. A request that still fails after the client's retries is
   recorded (llm_failures) and asked again by the next run; a malformed or refused answer is asked again
   until MAX_ATTEMPTS, then given up (its reason stays). The run's tokens and cost go to llm_runs.
2. `observe_cached`, inside the refresh's transaction: events with a cached answer and no LLM observations
   yet become observations (extractor `llm`, evidence kinds `llm:<kind>`) in an extraction run of their own,
   so the fold counts them as new whatever their time.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import duckdb
import pyarrow as pa

from selfmodel.beliefs.extractors.base import Finding
from selfmodel.clock import Clock, SystemClock
from selfmodel.llm.base import BatchRequest, LLMError, Usage
from selfmodel.llm.budget import Budget, estimate_usage
from selfmodel.llm.extract import NAME, PROMPT_VERSION, ExtractedItem, UserProfile, ground, messages_for
from selfmodel.llm.runs import LLMRunRecord, new_run_id, record_run
from selfmodel.settings import LLM_EXTRACTOR, Settings
from warehouse.db import load_sql, run, run_dicts

log = logging.getLogger("selfmodel.llm")

# A malformed, refused or rejected answer is asked again until it has failed this many times.
MAX_ATTEMPTS = 3
# Failures after which a run stops asking: the endpoint is down or hung (a request that timed out after every
# retry: each further one would hold the run timeout_seconds x (max_retries + 1)), or the key is refused.
STOPPING_KINDS = ("unavailable", "timeout", "auth")
# A run whose first this-many answers are all rejections (HTTP 400/404/422: a model name the endpoint does not
# know, a server without structured outputs) stops, and those rejections count against no message: the
# request was wrong, not the message, and after MAX_ATTEMPTS nights every message would be given up for good.
REJECTIONS_BEFORE_ANY_ANSWER = 3
_SCHEMA_CHARS = len(json.dumps(UserProfile.model_json_schema()))
# What one Batch API batch may hold (OpenAI: 50,000 requests, a 200 MB input file; each line repeats the prompt
# and the schema): a run submits at most this much, and what is left stays pending for the next run.
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 150_000_000


@dataclass
class AskReport:
    """What one run of `ask_pending` did (RefreshReport.llm, the nightly summary, llm_runs.details)."""

    run_id: str
    model: str
    prompt_version: str
    mode: str = "direct"  # direct | batch | none (nothing pending)
    pending: int = 0  # distinct message texts pending when the run started
    requests: int = 0
    answered: int = 0  # answers cached (a batch's included)
    items_kept: int = 0
    items_dropped: int = 0  # not grounded in the message
    failed: int = 0  # transient failures, asked again next run
    malformed: int = 0  # malformed or refused answers (asked again until MAX_ATTEMPTS)
    batches_submitted: int = 0
    batches_collected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    max_cost_usd: float | None = None
    stopped: str | None = None  # budget | unavailable | timeout | auth | rejected: why the run stopped asking early
    left_pending: int = 0  # distinct texts still pending after the run
    failures: dict[str, int] = field(default_factory=dict)  # kind -> count
    observations: int = 0  # filled in by the refresh (observe_cached)
    events_observed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def summary_line(report: dict) -> str:
    """One line for the nightly summary and logs."""
    stopped = {"budget": "stopped at the budget cap", "unavailable": "stopped: endpoint unavailable",
               "timeout": "stopped: the endpoint did not answer in time",
               "auth": "stopped: the key was refused",
               "rejected": "stopped: the endpoint rejected every request (is llm.model right, and does the endpoint "
                           "take structured outputs?)"}.get(report.get("stopped") or "", "")
    cap = report.get("max_cost_usd")
    parts = [f"LLM {report['model']}: {report['requests']:,} requests ({report['mode']})",
             f"{report['answered']:,} answered", f"{report['items_kept']:,} items kept",
             f"{report['items_dropped']:,} dropped as ungrounded",
             f"{report['input_tokens']:,} + {report['output_tokens']:,} tokens",
             f"~${report['cost_usd']:.4f}" + (f" of ${cap:g}" if cap is not None else ""),
             f"{report['failed'] + report['malformed']:,} failed",
             f"{report['observations']:,} observations"]
    if stopped:
        parts.append(stopped)
    if report.get("left_pending"):
        parts.append(f"{report['left_pending']:,} messages left for the next run")
    return "; ".join(parts)


class _Asker:
    """One run's asking: writes go through the caller's connection, from this thread only."""

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: Settings, model, budget: Budget, clock: Clock,
                 report: AskReport, role_lookup) -> None:
        self.con, self.llm, self.model, self.budget, self.clock = con, settings.llm, model, budget, clock
        self.report, self.role_lookup = report, role_lookup
        self.keys = {"model": report.model, "prompt_version": report.prompt_version}
        self.batch_reserved = Usage()  # estimates held for the batch this run submitted
        self.any_answer = False  # an answer (of any shape) came back this run: the endpoint takes the requests
        self.held_rejections: list[tuple[str, LLMError]] = []  # until then, rejections are not the messages'
        self.batch_refused = False  # the endpoint refused the Batch API: this run asks directly

    # --- storing outcomes ---------------------------------------------------------------------------------

    def store_answer(self, text_hash: str, sent: str, profile: UserProfile, usage: Usage) -> None:
        grounded = ground(profile, sent, self.role_lookup)
        run(self.con, "insert_llm_extraction", {
            "text_hash": text_hash, **self.keys, "items": json.dumps([item.to_json() for item in grounded.items]),
            "items_dropped": grounded.dropped, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "run_id": self.report.run_id, "extracted_at": self.clock.now()})
        run(self.con, "clear_llm_failure", {"text_hash": text_hash, **self.keys})
        self.report.answered += 1
        self.report.items_kept += len(grounded.items)
        self.report.items_dropped += grounded.dropped

    def store_failure(self, text_hash: str, error: LLMError) -> None:
        run(self.con, "upsert_llm_failure", {"text_hash": text_hash, **self.keys, "kind": error.kind,
                                             "reason": str(error)[:500], "failed_at": self.clock.now(),
                                             "run_id": self.report.run_id})
        if error.transient or error.kind == "auth":
            self.report.failed += 1
        else:
            self.report.malformed += 1
        self.report.failures[error.kind] = self.report.failures.get(error.kind, 0) + 1

    # --- direct requests ----------------------------------------------------------------------------------

    def ask_directly(self, pending: list[tuple[str, str]]) -> None:
        queue = iter(pending)
        in_flight: dict[Future, tuple[str, str, Usage]] = {}
        with ThreadPoolExecutor(self.llm.concurrency, thread_name_prefix="llm") as pool:

            def submit_next() -> bool:
                if self.report.stopped:
                    return False
                for text_hash, text in queue:
                    messages, sent = messages_for(text, self.llm.max_message_chars)
                    estimate = estimate_usage(messages, self.llm.max_output_tokens, _SCHEMA_CHARS)
                    if not self.budget.reserve(estimate):
                        self.report.stopped = "budget"
                        return False
                    future = pool.submit(self.model.parse, messages, UserProfile,
                                         max_output_tokens=self.llm.max_output_tokens)
                    in_flight[future] = (text_hash, sent, estimate)
                    self.report.requests += 1
                    return True
                return False

            while len(in_flight) < self.llm.concurrency and submit_next():
                pass
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    text_hash, sent, estimate = in_flight.pop(future)
                    try:
                        parsed = future.result()
                    except LLMError as error:
                        self.budget.settle(estimate, error.usage)
                        self.failed(text_hash, error)
                        continue
                    self.budget.settle(estimate, parsed.usage)
                    self.answered()
                    self.store_answer(text_hash, sent, parsed.value, parsed.usage)
                while len(in_flight) < self.llm.concurrency and submit_next():
                    pass
        if self.any_answer:  # the endpoint answered others: these rejections were the messages' own
            self.answered()
        else:  # nothing but rejections: not recorded against the messages, which stay pending
            for _, error in self.held_rejections:
                self.report.failed += 1
                self.report.failures[error.kind] = self.report.failures.get(error.kind, 0) + 1
            self.held_rejections.clear()

    def failed(self, text_hash: str, error: LLMError) -> None:
        if error.kind == "rejected" and not self.any_answer:
            self.held_rejections.append((text_hash, error))
            if len(self.held_rejections) >= REJECTIONS_BEFORE_ANY_ANSWER and not self.report.stopped:
                self.report.stopped = "rejected"
            return
        if error.kind in ("malformed", "refused"):
            self.answered()  # an answer, if a bad one: the endpoint takes the requests
        self.store_failure(text_hash, error)
        if error.kind in STOPPING_KINDS and not self.report.stopped:
            self.report.stopped = error.kind

    def answered(self) -> None:
        """The endpoint answered a request: rejections held until now are the messages' own after all."""
        self.any_answer = True
        held, self.held_rejections = self.held_rejections, []
        for text_hash, error in held:
            self.store_failure(text_hash, error)

    # --- the Batch API ------------------------------------------------------------------------------------

    def submit_batch(self, pending: list[tuple[str, str]]) -> str | None:
        """Submit the pending texts the budget has room for as one batch; its id (None: nothing fitted)."""
        requests, hashes = [], []
        size = 0
        for text_hash, text in pending:
            messages, _ = messages_for(text, self.llm.max_message_chars)
            # a line's size, about: its messages as JSON, the schema, the request's own fields
            size += len(json.dumps(messages).encode()) + _SCHEMA_CHARS + 300
            if len(requests) >= MAX_BATCH_REQUESTS or size > MAX_BATCH_BYTES:
                break
            estimate = estimate_usage(messages, self.llm.max_output_tokens, _SCHEMA_CHARS)
            if not self.budget.reserve(estimate):
                self.report.stopped = "budget"
                break
            self.batch_reserved += estimate
            requests.append(BatchRequest(text_hash, messages, self.llm.max_output_tokens))
            hashes.append(text_hash)
        if not requests:
            return None
        try:
            batch_id = self.model.submit_batch(requests, UserProfile)
        except LLMError as error:
            if error.kind == "rejected":
                # Not these messages' failure: the endpoint has no Batch API (vLLM, llama.cpp, Ollama) or refuses
                # this batch. Counted against each message, three nights of it would give them all up.
                log.warning("the endpoint refused the Batch API (%s): asking directly instead (set "
                            "llm.batch_threshold above the pending messages to skip trying)", error)
                self.batch_refused = True
                return None
            for text_hash in hashes:
                self.store_failure(text_hash, error)
            self.report.stopped = error.kind if error.kind in STOPPING_KINDS else self.report.stopped
            return None
        run(self.con, "insert_llm_batch", {"batch_id": batch_id, "run_id": self.report.run_id, **self.keys,
                                           "text_hashes": hashes, "submitted_at": self.clock.now(),
                                           "status": "submitted"})
        self.report.requests += len(requests)
        self.report.batches_submitted += 1
        return batch_id

    def collect_batches(self, wait_seconds: float) -> None:
        """Collect every open batch that is done, waiting up to `wait_seconds` for those still running."""
        deadline = time.monotonic() + wait_seconds
        while True:
            still_open = 0
            for batch in run_dicts(self.con, "llm_open_batches"):
                if (batch["model"], batch["prompt_version"]) != (self.report.model, self.report.prompt_version):
                    continue  # asked with another model or prompt: its answers would not be used
                try:
                    state = self.model.batch_state(batch["batch_id"])
                except LLMError as error:
                    self.unreadable(batch, error, "its state")
                    continue
                if state.done:
                    self.collect(batch, state.status)
                else:
                    still_open += 1
            if not still_open or time.monotonic() >= deadline:
                return
            time.sleep(min(self.llm.batch_poll_seconds, max(0.0, deadline - time.monotonic())))

    def unreadable(self, batch: dict, error: LLMError, what: str) -> None:
        """The endpoint would not show a batch's state or results: refused (given up), or not now (next run)."""
        if error.kind == "rejected":
            self.give_up_batch(batch, error)
        else:
            log.warning("batch %s: cannot read %s (%s); a later run tries again", batch["batch_id"], what, error)

    def give_up_batch(self, batch: dict, error: LLMError) -> None:
        """A batch the endpoint refuses to show (unknown there: deleted, expired, or another endpoint's since
        base_url changed) never completes: closed as lost, its messages are asked again instead of waiting
        for it forever."""
        log.warning("batch %s: the endpoint refuses to show it (%s); closed as lost, its %d messages are asked "
                    "again", batch["batch_id"], error, len(batch["text_hashes"]))
        self.collect(batch, "lost")

    def collect(self, batch: dict, status: str) -> None:
        try:
            results = self.model.batch_results(batch["batch_id"], UserProfile) if status == "completed" else {}
        except LLMError as error:
            self.unreadable(batch, error, "its results")
            return
        texts = dict(run(self.con, "llm_texts_by_hash", {"text_hashes": list(batch["text_hashes"])}))
        for text_hash in batch["text_hashes"]:  # a text forgotten meanwhile is no longer listed: never stored
            result = results.get(text_hash)
            if result is None:
                self.store_failure(text_hash, LLMError("server_error", f"batch {status} without an answer for it"))
            elif isinstance(result, LLMError):
                self.budget.charge(result.usage)
                self.store_failure(text_hash, result)
            elif text_hash in texts:
                self.budget.charge(result.usage)
                _, sent = messages_for(texts[text_hash], self.llm.max_message_chars)
                self.store_answer(text_hash, sent, result.value, result.usage)
        run(self.con, "close_llm_batch", {"batch_id": batch["batch_id"], "status": status,
                                          "collected_at": self.clock.now()})
        self.report.batches_collected += 1


def ask_pending(con: duckdb.DuckDBPyConnection, settings: Settings, clock: Clock | None = None, model=None,
                budget: Budget | None = None, everything: bool = False) -> AskReport:
    """Ask the model about every pending message text the budget has room for; cache the grounded answers.
    `everything`: also the texts of events already observed (before a full refresh, which observes them again).

    Runs outside any transaction (each answer is stored as it arrives). `model` defaults to the configured
    endpoint (selfmodel.llm.openai_client.chat_model_from_settings, which reads the key now); `budget` to the
    run's cap. Records the run in llm_runs."""
    clock = clock or SystemClock()
    started = clock.now()
    llm = settings.llm
    if llm is None:
        raise ValueError("the LLM extractor needs the llm section of the config")
    if model is None:
        from selfmodel.llm.openai_client import chat_model_from_settings

        model = chat_model_from_settings(llm)
    budget = budget or Budget.from_settings(llm)
    report = AskReport(new_run_id("extract", started), llm.model, PROMPT_VERSION, max_cost_usd=budget.cap_usd)
    asker = _Asker(con, settings, model, budget, clock, report, _role_lookup(settings))
    keys = {**asker.keys, "max_attempts": MAX_ATTEMPTS, "everything": everything}
    asker.collect_batches(wait_seconds=0)  # batches an earlier run could not wait for
    pending = run(con, "llm_pending_messages", keys)
    report.pending = len(pending)
    if not pending:
        report.mode = "none"
    elif len(pending) > llm.batch_threshold:
        report.mode = "batch"
        if asker.submit_batch(pending) is not None:
            asker.collect_batches(wait_seconds=llm.batch_wait_seconds)
        # What was collected is charged as used; a batch still running is charged by the run that collects it.
        budget.release(asker.batch_reserved)
        if asker.batch_refused:
            report.mode, report.stopped = "direct", None
            asker.ask_directly(pending)
    else:
        asker.ask_directly(pending)
    [(report.left_pending,)] = run(con, "count_llm_pending", keys)
    spent = budget.spent
    report.input_tokens, report.output_tokens = spent.input_tokens, spent.output_tokens
    report.cost_usd = round(budget.spent_usd, 6)
    record_run(con, LLMRunRecord.of(report.run_id, "extract", llm.model, started, clock.now(), report.requests,
                                    budget, report.to_json()))
    level = logging.WARNING if report.stopped in (*STOPPING_KINDS, "rejected") else logging.INFO
    log.log(level, "%s", summary_line(report.to_json()))
    return report


def _role_lookup(settings: Settings):
    """The role lexicon's lookup (the rule extractor's), so both extractors name a role alike."""
    from selfmodel.beliefs.extractors import load_yaml_mapping
    from selfmodel.beliefs.extractors.role import RoleExtractor

    roles_path = settings.resolve(settings.beliefs.roles_path) if settings.beliefs.roles_path else None
    return RoleExtractor(load_yaml_mapping(roles_path, "roles.yaml")).lookup


@dataclass
class ObserveReport:
    events: int = 0
    observations: int = 0
    extract_run: int | None = None


def observe_cached(con: duckdb.DuckDBPyConnection, settings: Settings) -> ObserveReport:
    """Store observations for every user message whose text has a cached answer and whose event has none yet.
    Runs inside the caller's (the refresh's) transaction, as an extraction run of its own."""
    from selfmodel.beliefs.observe import OBSERVATION_COLUMNS, ObservationWriter, evidence_unit

    keys = {"model": settings.llm.model, "prompt_version": PROMPT_VERSION}
    rows = run_dicts(con, "llm_events_to_observe", keys)
    report = ObserveReport(events=len(rows))
    if not rows:
        return report
    weight = settings.beliefs.extractor(LLM_EXTRACTOR).weight
    [(report.extract_run,)] = run(con, "next_extract_run")
    writer = ObservationWriter(con, report.extract_run)
    columns: dict[str, list] = {name: [] for name in OBSERVATION_COLUMNS}
    per_event: list[int] = []
    for row in rows:
        items = [ExtractedItem.from_json(item) for item in json.loads(row["items"])]
        for item in items:
            finding: Finding = item.finding()
            columns["user_id"].append(row["user_id"])
            columns["key"].append(finding.key)
            columns["value"].append(finding.value)
            columns["weight"].append(finding.weight * weight)
            columns["observed_at"].append(row["occurred_at"])
            columns["event_id"].append(row["event_id"])
            columns["source"].append(row["source"])
            columns["extractor"].append(NAME)
            columns["extractor_version"].append(f"{settings.llm.model}|{PROMPT_VERSION}")
            columns["batch_id"].append(row["batch_id"])
            columns["evidence_kind"].append(f"{NAME}:{finding.kind}")
            columns["evidence_unit"].append(evidence_unit(row, finding))
        per_event.append(len(items))
    writer.add_columns(columns, Counter())
    writer.flush()
    report.observations = writer.written
    # Read by the SQL as a local of this frame (DuckDB's replacement scan), as ObservationWriter does.
    observed_events = pa.table({  # noqa: F841
        "source": [row["source"] for row in rows], "event_id": [row["event_id"] for row in rows],
        "user_id": [row["user_id"] for row in rows], "text_hash": [row["text_hash"] for row in rows],
        "observations": pa.array(per_event, pa.int32()),
    })
    con.execute(load_sql("insert_llm_observed"), {**keys, "extract_run": report.extract_run}).fetchall()
    return report
