-- Sources beyond local files (README "Sources in PostgreSQL and object storage").
-- A postgres source's cursor watermark: the greatest cursor value its committed batches read, written in the
-- batch's transaction so it moves only when the batch's rows are stored. The value is kept as JSON text with
-- its type, so the next batch binds it back to PostgreSQL as the same type.
create table ingest_cursors (
    source         varchar     not null primary key,
    cursor_column  varchar     not null,
    value_type     varchar     not null, -- int | decimal | float | timestamp | timestamptz | date | text
    watermark      varchar     not null, -- the value, as text (ISO-8601 for times)
    last_batch_id  varchar     not null,
    updated_at     timestamptz not null
);

-- An object in object storage is known by its ETag (or version id), not its mtime: a rewritten object gets a
-- new one even when its size stays. NULL for local files.
alter table ingest_files add column etag varchar;
