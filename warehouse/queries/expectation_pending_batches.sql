-- expectation_pending_batches: committed ingest batches that read something and that a per-batch
-- suite has not validated yet, oldest first. Explicit $batch_ids (re-validation) replace "not yet".
-- Parameters: $suite, $batch_ids (NULL = every batch not yet validated by $suite)
with candidates as (
    select batch_id, source, started_at
    from ingest_batches
    where status = 'committed' and rows_read > 0
),

validated as (
    select distinct batch_id from expectation_runs where suite = $suite and batch_id is not null
),

final as (
    select c.batch_id, c.source, c.started_at
    from candidates as c
    where case
        when $batch_ids is null then c.batch_id not in (select batch_id from validated)
        else list_contains($batch_ids, c.batch_id)
    end
)

select * from final
order by started_at, batch_id
