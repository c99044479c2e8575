-- Belief layer: observations drawn from events, current beliefs, their history, refresh runs and
-- the record of deletions. See README "Belief model" for the formula these tables hold.

create table observations (
    user_id           varchar     not null,
    key               varchar     not null,  -- e.g. topic, expertise, expertise@qubit, role, fact
    value             varchar     not null,
    weight            double      not null,
    observed_at       timestamptz not null,  -- the event's occurred_at
    event_id          varchar     not null,
    source            varchar     not null,
    extractor         varchar     not null,
    extractor_version varchar     not null,
    batch_id          varchar     not null,  -- the ingest batch of the event
    extract_run       bigint      not null   -- which extraction run wrote it (increases by one per run)
);

-- Which ingest batches have been run through the extractors (and with which extractor set).
create table extracted_batches (
    batch_id       varchar primary key,
    extract_run    bigint      not null,
    extractor_set  varchar     not null,
    observations   bigint      not null,
    extracted_at   timestamptz not null
);

-- What we believed when: one row per (user, key, value) per refresh that touched its (user, key),
-- in force from valid_from until valid_to (NULL while in force). Rows of one (user, key) in force
-- always share valid_from, so the decayed evidence of every value of a key is comparable.
create table belief_history (
    user_id          varchar     not null,
    key              varchar     not null,
    value            varchar     not null,
    confidence       double      not null,  -- as of valid_from
    evidence_count   bigint      not null,
    decayed_evidence double      not null,  -- S = sum of w_i * 2^(-(valid_from - t_i) / half_life)
    first_seen       timestamptz not null,
    last_evidence_at timestamptz not null,
    valid_from       timestamptz not null,
    valid_to         timestamptz
);

-- Current beliefs are the history rows in force: one source of truth, written once per refresh.
create view beliefs as
select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at,
       valid_from as as_of
from belief_history
where valid_to is null;

create table refresh_runs (
    refresh_id       varchar primary key,
    as_of            timestamptz not null,
    mode             varchar     not null,  -- incremental | full
    -- Observations folded in so far: extract_run <= this and observed_at <= as_of. Both only grow
    -- between full refreshes, so "already folded" is always this one rectangle.
    extract_run_watermark bigint not null,
    started_at       timestamptz not null,
    ended_at         timestamptz not null,
    observations_folded bigint   not null,
    groups_touched   bigint      not null,
    beliefs_total    bigint      not null,
    config_hash      varchar     not null,
    code_version     varchar     not null
);

-- `selfmodel forget USER_ID`: that a deletion happened, never what was deleted.
create table deletions (
    deleted_at   timestamptz not null,
    user_hash    varchar     not null,  -- sha256 of the user_id, to answer "was this user forgotten?"
    events       bigint      not null,
    observations bigint      not null,
    beliefs      bigint      not null,
    labels       bigint      not null
);
