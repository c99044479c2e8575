-- analyst_views: conveniences created in the analyst copy only (run with the copy as the default catalog,
-- so the views name their tables unqualified and work whatever name the copy is opened under).
-- Parameters: $exported_at, $source

-- Every eval metric of every run, one row each: chart any metric over time.
create or replace view eval_metrics as
select r.suite, r.run_id, r.started_at, r.data_as_of, r.passed, m.key as metric, try_cast(m.value as double) as value
from eval_runs as r, json_each(r.metrics) as m;

-- Quarantined records per source and reason, with the first and last time one arrived.
create or replace view quarantine_by_reason as
select q.source, q.reason, count(*) as records, min(b.started_at) as first_batch_at, max(b.started_at) as last_batch_at
from quarantine as q
left join ingest_batches as b using (batch_id)
group by all;

-- When this copy was taken and from which warehouse.
create or replace table analyst_export as
select $exported_at::timestamptz as exported_at, $source::varchar as source_warehouse;
