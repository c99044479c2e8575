-- Language models (README "LLM extractor"): what the LLM extractor asked and got back, what failed, batches in
-- flight, which events' LLM observations are stored, and what every run that called a model used and cost.
-- No table holds an API key, a request or a raw reply: only the items that passed the grounding check.

-- The cache: one row per (message text, model, prompt version) ever answered, so a re-run, a backfill or a
-- full refresh never pays twice. text_hash is sha256 of the message text as stored in events.text.
create table llm_extractions (
    text_hash      varchar     not null,
    model          varchar     not null,
    prompt_version varchar     not null,
    items          json        not null,  -- the grounded items: [{key, value, kind, weight, span}]
    items_dropped  integer     not null,  -- items left out: span not in the message, or value not from it
    input_tokens   bigint      not null,
    output_tokens  bigint      not null,
    run_id         varchar     not null,
    extracted_at   timestamptz not null,
    primary key (text_hash, model, prompt_version)
);

-- Requests that gave no usable reply, with why (kind: rate_limited, server_error, timeout, unavailable,
-- malformed, refused, rejected, auth; reason: a line that never quotes the message or the reply). Retried by
-- the next run; a message the model answered malformed or refused this many times is given up (README).
create table llm_failures (
    text_hash       varchar     not null,
    model           varchar     not null,
    prompt_version  varchar     not null,
    kind            varchar     not null,
    reason          varchar     not null,
    attempts        integer     not null,
    first_failed_at timestamptz not null,
    last_failed_at  timestamptz not null,
    run_id          varchar     not null,
    primary key (text_hash, model, prompt_version)
);

-- Batches submitted to the Batch API; their messages are not asked again while one is in flight
-- (collected_at NULL). A later run collects a batch the run that submitted it could not wait for.
create table llm_batches (
    batch_id       varchar     not null,
    run_id         varchar     not null,
    model          varchar     not null,
    prompt_version varchar     not null,
    text_hashes    varchar[]   not null,
    submitted_at   timestamptz not null,
    status         varchar     not null,
    collected_at   timestamptz
);

-- Events whose LLM observations are in `observations` (written in extraction run extract_run). An event is
-- observed once, with whichever model and prompt were configured then; `refresh --full` starts over.
create table llm_observed (
    source         varchar not null,
    event_id       varchar not null,
    user_id        varchar not null,
    text_hash      varchar not null,
    model          varchar not null,
    prompt_version varchar not null,
    observations   integer not null,
    extract_run    bigint  not null
);

-- Every run that called a model (purpose: extract, or an eval's judge): tokens, estimated cost at the
-- configured prices, and whether the budget cap stopped it. `details` holds the purpose's own counts.
create table llm_runs (
    run_id            varchar     primary key,
    purpose           varchar     not null,
    model             varchar     not null,
    started_at        timestamptz not null,
    ended_at          timestamptz not null,
    requests          bigint      not null,
    input_tokens      bigint      not null,
    output_tokens     bigint      not null,
    cost_usd          double      not null,
    max_cost_usd      double,
    stopped_by_budget boolean     not null,
    details           json        not null
);
