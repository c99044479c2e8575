-- quarantine_examples: the latest quarantined records, with a short preview of their raw text.
-- Parameters: $source, $reason (NULL = all), $limit
select batch_id, source, file, line_no, byte_offset, reason, detail, event_id,
       left(replace(raw_text, chr(10), ' '), 200) as raw_preview, quarantined_at
from quarantine
where ($source is null or source = $source) and ($reason is null or reason = $reason)
order by quarantined_at desc, source, file, line_no
limit $limit
