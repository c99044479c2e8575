-- pending_batches_all: every committed ingest batch (what a full re-extraction reads).
select batch_id
from ingest_batches
where status = 'committed'
order by started_at, batch_id
