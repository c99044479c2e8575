-- insert_events: store the records classify_records decided to load (temp table `classified`).
-- Parameters: $source, $batch_id, $ingested_at
insert into events
select
    event_id, user_id, occurred_at, kind, text, session_id, reply_to, rating, tags,
    $source as source, $batch_id as batch_id, attributes, content_hash, is_late, $ingested_at as ingested_at
from classified
where outcome = 'load'
