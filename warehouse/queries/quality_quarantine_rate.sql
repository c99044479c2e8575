-- quality_quarantine_rate: one ingest batch's accounting, as the quarantine_rate suite checks it.
-- quarantine_rate = quarantined / rows_read; unaccounted = rows_read - loaded - duplicates - quarantined
-- (0 when every record ended in exactly one place); quarantine_rows_stored = rows the batch left in
-- `quarantine`.
-- Parameters: $batch_id
with batch as (
    select batch_id, source, rows_read, loaded, duplicates, quarantined
    from ingest_batches
    where batch_id = $batch_id
),

stored as (
    select count(*) as quarantine_rows_stored from quarantine where batch_id = $batch_id
),

final as (
    select
        b.*,
        b.quarantined / nullif(b.rows_read, 0)::double as quarantine_rate,
        b.rows_read - b.loaded - b.duplicates - b.quarantined as unaccounted,
        s.quarantine_rows_stored
    from batch as b
    cross join stored as s
)

select * from final
