-- insert_quarantine: keep every record that is not a valid new event, with why, where and what it was.
-- Parameters: $source, $batch_id, $quarantined_at
insert into quarantine
select
    $batch_id as batch_id, $source as source, file, line_no, byte_offset, reason, detail,
    case when reason = 'conflicting_duplicate' then event_id end as event_id,
    raw_text, raw_bytes, coalesce(raw_hash, md5(raw_text)) as raw_hash, $quarantined_at as quarantined_at, user_id
from classified
where outcome = 'quarantine'
