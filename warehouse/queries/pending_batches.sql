-- pending_batches: committed ingest batches whose events have not been run through the extractors.
select batch_id
from ingest_batches
where status = 'committed'
  and batch_id not in (select batch_id from extracted_batches)
order by started_at, batch_id
