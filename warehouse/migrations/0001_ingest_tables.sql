-- Ingestion layer: canonical events, quarantined records, batches, the file manifest and eval-only labels.

create table events (
    event_id      varchar     not null,  -- the source's id, or 'h:' + md5 of the content when it has none
    user_id       varchar     not null,
    occurred_at   timestamptz not null,  -- UTC
    kind          varchar     not null,  -- message | response | feedback
    text          varchar,
    session_id    varchar,
    reply_to      varchar,               -- event_id (same source) that a response answers or a feedback rates
    rating        double,
    tags          varchar[]   not null,
    source        varchar     not null,
    batch_id      varchar     not null,
    attributes    json        not null,  -- everything else the record carried
    content_hash  varchar     not null,  -- md5 of the canonical content; tells a duplicate from a conflict
    is_late       boolean     not null,  -- older than the source's newest event when it arrived
    ingested_at   timestamptz not null
);

create table quarantine (
    batch_id       varchar     not null,
    source         varchar     not null,
    file           varchar,
    line_no        bigint,               -- 1-based physical line (JSONL, CSV, XML) or record number (JSON, Parquet)
    byte_offset    bigint,               -- where the record starts in the file, when known
    reason         varchar     not null, -- machine-readable, see README "Quarantine reasons"
    detail         varchar,
    event_id       varchar,
    raw_text       varchar,              -- the record as text (undecodable bytes shown as \xNN)
    raw_bytes      blob,                 -- the exact bytes, kept only when raw_text cannot hold them
    raw_hash       varchar     not null, -- md5 of the raw record; a re-read bad record is counted once
    quarantined_at timestamptz not null
);

create table ingest_batches (
    batch_id         varchar primary key,
    source           varchar     not null,
    format           varchar     not null,
    status           varchar     not null, -- committed | failed
    started_at       timestamptz not null,
    ended_at         timestamptz,
    rows_read        bigint      not null,
    loaded           bigint      not null,
    duplicates       bigint      not null,
    quarantined      bigint      not null,
    late_events      bigint      not null,
    labels_loaded    bigint      not null,
    files            json        not null, -- [{path, action}] action: new | appended | rewritten | unchanged | reread
    watermark_before timestamptz,          -- newest occurred_at of the source before this batch
    error            varchar,
    code_version     varchar     not null
);

create table ingest_files (
    source          varchar     not null,
    path            varchar     not null,
    size            bigint      not null,
    mtime_ns        bigint      not null,
    sha256          varchar     not null, -- of the whole file as last read
    consumed_bytes  bigint      not null, -- bytes read so far (appendable formats resume here)
    resume_offset   bigint      not null, -- where the next read starts: before an unterminated last line
    resume_line     bigint      not null, -- line number at resume_offset, so line numbers stay true
    last_batch_id   varchar     not null,
    updated_at      timestamptz not null,
    primary key (source, path)
);

-- Profile and ground-truth fields (Stack Exchange AboutMe and Reputation, ConvAI2 personas).
-- Only evaluation code may read this table: nothing here is evidence for beliefs.
create table labels (
    source      varchar     not null,
    user_id     varchar     not null,
    label       varchar     not null,
    value       varchar     not null,
    observed_at timestamptz,
    context     varchar,              -- e.g. the dialog a persona line came with
    batch_id    varchar     not null
);
